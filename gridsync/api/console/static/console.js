// gridsync console: live countdowns to deadlines. The server renders the deadline as wall
// time; this turns it into "剩 12 分 05 秒" / "已超时 3 分", corrected for the device clock.
(function () {
  var els = document.querySelectorAll("time.due");
  if (!els.length) return;
  var skew = 0;
  var first = els[0].getAttribute("data-now");
  if (first) skew = Date.parse(first) - Date.now();
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function text(ms) {
    var late = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    var t = d ? d + " 天 " + h + " 时" : h ? h + " 时 " + two(m) + " 分" : m + " 分 " + two(s % 60) + " 秒";
    return late ? "已超时 " + t : "剩 " + t;
  }
  function tick() {
    var now = Date.now() + skew;
    for (var i = 0; i < els.length; i++) {
      var ms = Date.parse(els[i].getAttribute("datetime")) - now;
      els[i].textContent = text(ms);
      els[i].classList.toggle("late", ms < 0);
    }
  }
  tick();
  setInterval(tick, 1000);
})();
