"""Deadlines in working time: THE function every hotline deadline is computed by
(:func:`working_deadline`), over the district's calendar (``Settings.calendar``: workdays,
holidays, 调休 make-up workdays, working hours; ``gridsync/config.py``).

Two kinds of allowance, both counted in the calendar's time zone (``timezone``):

- ``hours``: working time. The clock runs only inside the working hours of working days; a
  start outside them starts at the next working period. 2 working hours from Friday 16:30
  (hours 09:00-12:00, 13:30-17:30) end on Monday at 10:00.
- ``days``: the end of the working hours of the N-th working day after the day of the start
  (the day the order arrived does not count, however early it arrived). 1 working day from
  Friday 10:00 is Monday 17:30; a start on a Saturday counts Monday as the first day.

Why not calendar time: the city's 12345 platform counts in working days (接诉即办), and an order
received on the eve of the National Day week would otherwise be "late" on the holiday.
``tests/test_hotline.py`` checks a weekend, a holiday and a make-up workday against dates
written out by hand.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from gridsync.config import WorkCalendar, minute_of_day
from gridsync.notify.outbox import zone as local_zone

MAX_DAYS_SEARCHED = 3660  # a calendar with no working day at all is refused, not looped over


def is_workday(calendar: WorkCalendar, day: date) -> bool:
    """A make-up workday (调休) works; otherwise a holiday does not; otherwise the weekday."""
    if day in calendar.makeup_workdays:
        return True
    if day in calendar.holidays:
        return False
    return day.weekday() in calendar.workdays


def _periods(calendar: WorkCalendar, day: date, tz: str) -> list[tuple[int, int]]:
    """The working periods of a day as epoch ms (none on a day off)."""
    if not is_workday(calendar, day):
        return []
    midnight = datetime(day.year, day.month, day.day, tzinfo=local_zone(tz))
    base = int(midnight.timestamp() * 1000)
    return [
        (base + minute_of_day(a) * 60_000, base + minute_of_day(b) * 60_000)
        for a, b in calendar.hours
    ]


def _day_of(ms: int, tz: str) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=local_zone(tz)).date()


def working_deadline(
    start_ms: int, calendar: WorkCalendar, tz: str, *, hours: float = 0, days: int = 0
) -> int:
    """The moment (epoch ms) an allowance of working ``hours`` or working ``days`` (one of
    them) given at ``start_ms`` runs out; see the module's docstring. ValueError when the
    calendar has no working day in ten years."""
    if (hours > 0) == (days > 0):
        raise ValueError("give working hours or working days, one of them")
    day = _day_of(start_ms, tz)
    if days > 0:
        left = days
        for _ in range(MAX_DAYS_SEARCHED):
            day += timedelta(days=1)
            periods = _periods(calendar, day, tz)
            if periods:
                left -= 1
                if left == 0:
                    return periods[-1][1]
        raise ValueError("the working calendar has no working day")
    left_ms = round(hours * 3_600_000)
    for _ in range(MAX_DAYS_SEARCHED):
        for a, b in _periods(calendar, day, tz):
            begin = max(a, start_ms)
            if begin >= b:
                continue
            if begin + left_ms <= b:
                return begin + left_ms
            left_ms -= b - begin
        day += timedelta(days=1)
    raise ValueError("the working calendar has no working day")
