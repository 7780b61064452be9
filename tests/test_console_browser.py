"""The console in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromium-driver, against the real app served by uvicorn on 127.0.0.1 (``served``).

These tests never skip: without /usr/bin/chromium and /usr/bin/chromedriver they FAIL, saying
what to install (``.ci/run`` installs chromium, chromium-driver and fonts-noto-cjk with apt-get
when they are missing, so CI always runs them). Selenium is told where both are, so it never
downloads a browser or a driver of its own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from gridsync import whistle
from gridsync.auth import authenticate
from gridsync.clock import SYSTEM_CLOCK
from gridsync.models import WhistleRaise
from gridsync.sync.hlc import format_hlc
from tests.conftest import bearer
from tests.sync_helpers import Phone

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE, DESKTOP = (390, 844), (1280, 900)


def chrome(width: int, height: int) -> webdriver.Chrome:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.fail(
            f"the browser tests need {', '.join(missing)}: "
            "apt-get install chromium chromium-driver fonts-noto-cjk (.ci/run does)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=zh-CN",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver = chrome(*DESKTOP)
    yield driver
    driver.quit()


@pytest.fixture
def fresh(browser) -> webdriver.Chrome:
    browser.delete_all_cookies()
    browser.set_window_size(*DESKTOP)
    return browser


@pytest.fixture
def api(served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, timeout=30) as c:
        yield c


def sign_in(driver, api, served, tiny, person: str) -> None:
    """Open a one-time link made over the API and press the button, as a person does."""
    r = api.post(
        "/api/v1/console/links", json={"person_id": person}, headers=bearer(tiny.tokens["admin"])
    )
    assert r.status_code == 201, r.text
    driver.get(served + r.json()["url"])
    driver.find_element(By.ID, "signin").click()
    WebDriverWait(driver, 10).until(ec.url_to_be(served + "/console"))
    wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]"))


def wait(driver) -> WebDriverWait:
    """Wait for what a page shows after it loads (elements of the page before are stale)."""
    return WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,))


def raise_case(store, tiny, settings, case_id="case-b1", grid="g1", by="m1") -> None:
    store.write(
        whistle.raise_case,
        store.read(authenticate, tiny.tokens[by]),
        case_id,
        WhistleRaise(category="占道经营", grid_id=grid, location="3号楼", description="门口摆摊"),
        received_ms=SYSTEM_CLOCK.now_ms(),
        settings=settings,
    )


def test_sign_in_by_link_accept_a_case_and_the_api_agrees(
    fresh, api, served, tiny, store, settings
):
    raise_case(store, tiny, settings)
    sign_in(fresh, api, served, tiny, "m1")
    assert fresh.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]").text == "今日"
    # the countdown is live: the script replaced the server's wall time
    wait(fresh).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "time.due").text.startswith(("剩", "已超时"))
    )
    fresh.find_element(By.LINK_TEXT, "占道经营").click()
    fresh.find_element(By.ID, "note").send_keys("马上到")
    fresh.find_element(By.ID, "act-accept").click()
    wait(fresh).until(lambda d: d.find_element(By.ID, "case-state").text == "已受理")
    assert "已受理。" in fresh.find_element(By.CSS_SELECTOR, "[role=status]").text
    case = api.get("/api/v1/whistle/cases/case-b1", headers=bearer(tiny.tokens["m1"])).json()
    assert case["state"] == "accepted" and case["accepted_by"] == "m1"
    assert case["history"][-1]["note"] == "马上到"


def test_restore_a_conflict(fresh, api, served, tiny, store):
    now = SYSTEM_CLOCK.now_ms()
    sec = Phone(api, tiny.tokens["sec"], tiny.devices["sec"])
    m1 = Phone(api, tiny.tokens["m1"], tiny.devices["m1"])
    base = store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = 'hh-g1-1'").fetchone()[0]
    )
    later = format_hlc(now - 5000, 0, tiny.devices["m1"])
    earlier = format_hlc(now - 9000, 0, tiny.devices["sec"])
    m1.push(
        [
            m1.mutation(
                "household.update",
                "hh-g1-1",
                base_seq=base,
                hlc=later,
                fields={"phone": "13700000002"},
            )
        ]
    )
    res = sec.push(
        [
            sec.mutation(
                "household.update",
                "hh-g1-1",
                base_seq=base,
                hlc=earlier,
                fields={"phone": "13700000001"},
            )
        ]
    ).json()["results"][0]
    conflict_id = res["lost"][0]["conflict_id"]
    sign_in(fresh, api, served, tiny, "sec")
    fresh.find_element(By.LINK_TEXT, "住户").click()
    search = fresh.find_element(By.ID, "q")
    search.send_keys("住户g11")
    search.submit()
    wait(fresh).until(lambda d: "q=" in d.current_url)
    wait(fresh).until(lambda d: d.find_element(By.PARTIAL_LINK_TEXT, "3号楼1单元101")).click()
    fresh.find_element(By.ID, f"restore-{conflict_id}").click()
    wait(fresh).until(lambda d: "done=restore" in d.current_url)
    assert "已恢复该值" in fresh.find_element(By.CSS_SELECTOR, "[role=status]").text
    got = api.get("/api/v1/households/hh-g1-1", headers=bearer(tiny.tokens["sec"])).json()
    assert got["phone"] == "13700000001"


def test_out_of_scope_is_refused(fresh, api, served, tiny, store, settings):
    raise_case(store, tiny, settings, case_id="case-b2")
    sign_in(fresh, api, served, tiny, "m2")  # grid g2; the case is in g1
    fresh.get(served + "/console/cases/case-b2")
    body = fresh.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "未找到（404）" in body and "case_not_found" in body
    rest = api.get("/api/v1/whistle/cases/case-b2", headers=bearer(tiny.tokens["m2"]))
    assert rest.status_code == 404 and rest.json()["code"] == "case_not_found"


def test_a_form_without_its_csrf_token_is_refused(fresh, api, served, tiny, store, settings):
    raise_case(store, tiny, settings, case_id="case-b3")
    sign_in(fresh, api, served, tiny, "m1")
    fresh.get(served + "/console/cases/case-b3")
    fresh.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    fresh.find_element(By.ID, "act-accept").click()
    body = wait(fresh).until(lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]")).text
    assert "无权操作（403）" in body and "csrf_failed" in body
    case = api.get("/api/v1/whistle/cases/case-b3", headers=bearer(tiny.tokens["m1"])).json()
    assert case["state"] == "raised"


def test_every_page_fits_a_phone(fresh, api, served, tiny, store, settings):
    """At 390 px nothing is wider than the screen (no sideways scrolling in WeCom)."""
    raise_case(store, tiny, settings, case_id="case-b4")
    sign_in(fresh, api, served, tiny, "sec")
    fresh.set_window_size(*PHONE)
    for path in (
        "/console",
        "/console/cases",
        "/console/cases/case-b4",
        "/console/households",
        "/console/households/hh-g1-1",
        "/console/account",
    ):
        fresh.get(served + path)
        inner = fresh.execute_script("return window.innerWidth")
        wide = fresh.execute_script("return document.documentElement.scrollWidth")
        assert wide <= inner, (path, wide, inner)
        # every form control has a label or an accessible name
        unlabeled = fresh.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]"
            ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name)"
        )
        assert unlabeled == [], (path, unlabeled)


def test_export_an_xlsx_from_the_coverage_page(api, served, tiny, tmp_path):
    """The 覆盖 page's export button downloads the XLSX into the browser's download folder; it
    reads back with openpyxl and holds the secretary's community."""
    import openpyxl

    driver = chrome(*DESKTOP)
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
        )
        sign_in(driver, api, served, tiny, "sec")
        driver.find_element(By.LINK_TEXT, "覆盖").click()
        wait(driver).until(lambda d: d.find_element(By.ID, "h-fig"))
        driver.find_element(By.LINK_TEXT, "导出 XLSX").click()
        WebDriverWait(driver, 20).until(
            lambda _: [p for p in tmp_path.iterdir() if p.suffix == ".xlsx"]
        )
        (path,) = [p for p in tmp_path.iterdir() if p.suffix == ".xlsx"]
        book = openpyxl.load_workbook(path)
        cells = {str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row}
        assert "出头社区" in cells and "第一网格" in cells
    finally:
        driver.quit()


def test_the_new_pages_fit_a_phone(fresh, api, served, tiny, store):
    """覆盖, 抽检, 通知, 人员与设备, 审计 at 390 px: no sideways scrolling, every field labelled."""
    sign_in(fresh, api, served, tiny, "admin")
    fresh.set_window_size(*PHONE)
    for path in (
        "/console/coverage",
        "/console/coverage?unit=c1",
        "/console/coverage?unit=g1",
        "/console/checks",
        "/console/inbox",
        "/console/admin/people",
        "/console/admin/import",
        "/console/audit",
    ):
        fresh.get(served + path)
        assert fresh.execute_script("return document.title").endswith("网格通"), path
        inner = fresh.execute_script("return window.innerWidth")
        wide = fresh.execute_script("return document.documentElement.scrollWidth")
        assert wide <= inner, (path, wide, inner)
        unlabeled = fresh.execute_script(
            "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]"
            ".filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name)"
        )
        assert unlabeled == [], (path, unlabeled)
