"""The pages in a real browser: Debian's headless Chromium driven by Selenium through chromedriver.

A real server (waitress, as `clout run` serves) on 127.0.0.1 over a real
embedded Redis and SQLite store; tickets come in as signed webhooks over HTTP
and are decided by a real RQ worker, so the pages show what the pipeline made.
Nothing is downloaded: the browser is /usr/bin/chromium, the driver
/usr/bin/chromedriver (`make test` installs both with apt-get when it runs as
root). Each page is saved as a screenshot under tests/artifacts/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from conftest import TEST_SECRET, TEST_TOKEN, standard_webhook_headers, work
from connectors.crm.base import Customer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).parent / "artifacts" / "screenshots"
ADMIN_TOKEN = "browser-admin-token-4e2b-0123456789abcdef"
PHONE = (390, 844)  # an iPhone 12-ish viewport, CSS pixels
DESKTOP = (1280, 1000)
WAIT = 10.0

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is missing: pip install -e '.[test]' (make test does)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium "
                "chromium-driver (make test does when run as root)", allow_module_level=True)


# -- the browser and the server ------------------------------------------------------------------------

@pytest.fixture()
def browser() -> Iterator[Any]:
    profile = Path(tempfile.mkdtemp(prefix="clout-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture()
def site(tmp_path, runtime_with, base_env, monkeypatch) -> Iterator[dict[str, Any]]:
    """A served Clout app (waitress on 127.0.0.1) watching a writable config file."""
    from plugin import create_app
    from plugin.web_server import WebServer, bind_listener

    cfg = tmp_path / "config" / "clout.toml"
    cfg.parent.mkdir()
    cfg.write_text("# Clout settings for the browser test\n[ranking.weights]\nspend = 0.25\n")
    env = {"CLOUT_CONFIG": str(cfg), "CLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
           "CLOUT_PAGES__REFRESH_SECONDS": "1", "CLOUT_WEBHOOK_SECRET_SOCIAL": TEST_SECRET}
    for k, v in {**base_env, **env}.items():
        monkeypatch.setenv(k, v)  # the app's settings watcher reads the process environment
    rt = runtime_with(env)
    server = WebServer(create_app(runtime=rt), bind_listener("127.0.0.1", 0)).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        yield {"rt": rt, "base": base, "cfg": cfg}
    finally:
        server.stop(grace=1)


def _post(base: str, events: list[dict[str, Any]]) -> None:
    with requests.Session() as s:
        s.trust_env = False
        for e in events:
            raw = json.dumps(e).encode()
            resp = s.post(f"{base}/webhooks/generic", data=raw, timeout=10, headers=standard_webhook_headers(
                TEST_SECRET, f"msg_{uuid.uuid4().hex}", raw))
            assert resp.status_code == 202, resp.text


def _event(ticket_id: str, customer_id: str, subject: str, description: str = "",
           age_hours: float = 2.0) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    return {"event_id": f"evt_{uuid.uuid4().hex}", "occurred_at": now.isoformat(),
            "ticket": {"id": ticket_id, "subject": subject, "description": description,
                       "priority": "Normal",
                       "created_at": (now - dt.timedelta(hours=age_hours)).isoformat()},
            "customer": {"id": customer_id}}


def seed(site: dict[str, Any]) -> None:
    """The hotel story: a loud social complaint from a valuable guest among ordinary tickets."""
    rt = site["rt"]
    today = dt.date.today()
    rt.store.upsert_customers(
        [Customer(id=f"BOOK-{i}", name=f"Guest {i}", monthly_spend=float(20 + 15 * i),
                  contract_end=(today + dt.timedelta(days=40 + 9 * i)).isoformat())
         for i in range(12)]
        + [Customer(id="C-HOTEL", name="Dana Whitfield",
                    handles={"x": "adaq", "bluesky": "adaq.bsky.social"},
                    monthly_spend=9000.0, contract_end=(today + dt.timedelta(days=10)).isoformat()),
           Customer(id="C-EVIL", name="Mallory <img src=x onerror=alert(1)>", monthly_spend=40.0)])
    # Her influence two days ago (the pipeline adds today's when it decides her ticket).
    rt.store.record_influence([{"customer_id": "C-HOTEL", "score": 17.0, "model_version": "seed",
                                "computed_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)}])
    _post(site["base"], [
        _event("T-WIFI", "C-HOTEL", "Charged twice for wifi",
               "This is outrageous and unacceptable: charged twice for wifi. I am posting this on "
               "Twitter right now unless it is credited before check-out.", age_hours=1),
        _event("T-EVIL", "C-EVIL", "<script>alert('pwned')</script>", "<b>bold</b>"),
        _event("T-AGED", "BOOK-2", "Invoice copy needed", age_hours=60),
        *[_event(f"T-{100 + i}", f"BOOK-{i}", f"Question about booking {i}", age_hours=3 + i)
          for i in range(8)],
    ])
    work(rt)
    # The demo's three social mentions, signed, over HTTP: one is her loud wifi complaint.
    from plugin.mentions import mention_store, post_demo_mentions

    answers = post_demo_mentions(site["base"], rt.settings)
    assert [a["http_status"] for a in answers] == [202, 202, 202]
    deadline = time.monotonic() + WAIT
    while len([m for m in mention_store(rt).feed(limit=10) if m.get("escalation")]) < 3:
        assert time.monotonic() < deadline, "the mentions were not handled"
        work(rt)
        time.sleep(0.05)
    work(rt)  # the complaint's ticket event


# -- helpers --------------------------------------------------------------------------------------------

def shot(driver, name: str, size: tuple[int, int] = DESKTOP) -> Path:
    """Save a screenshot of the current page and print its path: the whole page at desktop
    width (through the DevTools protocol), the first screen at phone size."""
    import base64

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.set_window_size(*size)
    if size == DESKTOP:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        data = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"],
                     "scale": 1}})["data"]
        path.write_bytes(base64.b64decode(data))
    else:
        driver.save_screenshot(str(path))
    driver.set_window_size(*DESKTOP)
    print(f"screenshot: {path}")
    assert path.stat().st_size > 5000, path
    return path


def wait_for(driver, by: str, what: str):
    return WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((by, what)))


def login_with_token(driver, base: str, token: str) -> None:
    driver.get(f"{base}/pages/queue")
    assert "/pages/login" in driver.current_url  # sent to the form, not shown JSON
    shot(driver, "login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(driver, WAIT).until(EC.url_contains("/pages/queue"))


def no_script_ran(driver, page: str = "") -> None:
    """Hostile text stayed text: no alert opened, and the policy blocked nothing of ours
    (an inline style or script on a page is refused by its Content-Security-Policy)."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    problems = [e["message"] for e in driver.get_log("browser")
                if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]
    assert problems == [], f"{page}: put styles and scripts in static files: {problems}"


def queue_ids(driver, wait: float = 5.0) -> list[str]:
    # Read in one script: live refresh may swap the table between two WebDriver calls. An
    # empty read is looked at again for a moment: caught mid-swap on a busy machine, the
    # table was momentarily empty (seen once in a full PostgreSQL run).
    deadline = time.monotonic() + wait
    while True:
        ids = driver.execute_script(
            "return Array.from(document.querySelectorAll('#live tr[data-ticket]'))"
            ".map(function (tr) { return tr.getAttribute('data-ticket'); });")
        if ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.1)


def texts(driver, css: str) -> set[str]:
    return set(driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(function (e) { return e.textContent.trim(); });", css))


def click_first(driver, css: str) -> None:
    """Click the first match, again if live refresh replaced it in between."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(5):
        try:
            driver.find_elements(By.CSS_SELECTOR, css)[0].click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"{css} kept being replaced")


# -- the tests -------------------------------------------------------------------------------------------

def test_an_agent_filters_the_queue_and_follows_a_complaint_to_its_ticket(site, browser):
    seed(site)
    base, driver = site["base"], browser
    login_with_token(driver, base, TEST_TOKEN)

    ids = queue_ids(driver)
    assert len(ids) == 11 and ids[0] == "T-WIFI", ids  # the loud complaint from a big customer first
    (row,) = texts(driver, 'tr[data-ticket="T-WIFI"]')
    assert "SOCIAL_COMPLAINT" in row and "Dana Whitfield" in row and "Urgent" in row
    assert "<script>" in texts(driver, 'tr[data-ticket="T-EVIL"]').pop()
    no_script_ran(driver)
    shot(driver, "queue")
    shot(driver, "queue_phone", PHONE)

    # On a phone the table becomes labelled cards: nothing is wider than the screen.
    driver.set_window_size(*PHONE)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the queue is {overflow}px wider than a phone screen"
    driver.set_window_size(*DESKTOP)

    # Filter by flag with the form (a plain GET: works without JavaScript).
    Select(driver.find_element(By.ID, "f-flag")).select_by_value("AGED")
    driver.find_element(By.ID, "f-apply").click()
    WebDriverWait(driver, WAIT).until(EC.url_contains("flag=AGED"))
    assert queue_ids(driver) == ["T-AGED"]
    Select(driver.find_element(By.ID, "f-flag")).select_by_value("")
    Select(driver.find_element(By.ID, "f-tier")).select_by_value("low")
    driver.find_element(By.ID, "f-apply").click()
    WebDriverWait(driver, WAIT).until(EC.url_contains("tier=low"))
    low = queue_ids(driver)
    assert low and "T-WIFI" not in low
    assert texts(driver, "#live .tier") == {"Low"}
    shot(driver, "queue_filtered")

    # Live refresh (JavaScript on): a ticket decided now shows up without a reload.
    _post(base, [_event("T-LIVE", "BOOK-3", "A question that arrives while you watch")])
    work(site["rt"])
    WebDriverWait(driver, WAIT).until(lambda d: "T-LIVE" in queue_ids(d))

    # Follow the loudest complaint on the feed to its ticket.
    driver.get(f"{base}/pages/feed")
    first = wait_for(driver, By.CSS_SELECTOR, "main article.mention")
    assert "CHARGED ME TWICE for wifi" in first.text and "Dana Whitfield" in first.text
    shot(driver, "feed")
    no_script_ran(driver, "/pages/feed")
    click_first(driver, "main article.mention a.ticket-link")
    heading = wait_for(driver, By.CSS_SELECTOR, "h1.ticket-title")
    assert heading.text == "Charged twice for wifi"
    main = driver.find_element(By.TAG_NAME, "main").text
    assert "SOCIAL_COMPLAINT" in main and "Suggested gesture" in main
    assert "CHARGED ME TWICE" in driver.find_element(By.ID, "social").text
    assert re.search(r"Urgent|High", driver.find_element(By.CSS_SELECTOR, "section.card").text)
    shot(driver, "ticket")
    # The queue's SOCIAL_COMPLAINT filter finds the same ticket.
    driver.get(f"{base}/pages/queue?flag=SOCIAL_COMPLAINT")
    assert queue_ids(driver) == ["T-WIFI"]

    # From the ticket to the customer: the influence chart and every decision with its reason.
    driver.find_element(By.LINK_TEXT, "Dana Whitfield").click()
    summary = wait_for(driver, By.ID, "influence-summary").text
    assert re.fullmatch(r"17 two days ago, \d+ today", summary), summary
    assert driver.find_elements(By.CSS_SELECTOR, "svg.line polyline")
    assert "Charged twice for wifi" in driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "customer")
    shot(driver, "customer_phone", PHONE)

    # The hostile customer's page renders the name as text.
    driver.get(f"{base}/pages/customers/C-EVIL")
    assert "<img src=x onerror=alert(1)>" in driver.find_element(By.TAG_NAME, "h1").text
    no_script_ran(driver)

    # Agents don't reach the admin page.
    driver.get(f"{base}/pages/admin/weights")
    assert "403" in driver.find_element(By.TAG_NAME, "h1").text


def test_an_admin_saves_a_tuned_weight_and_sees_its_audit_entry(site, browser):
    from plugin.pages.auth import login_link

    seed(site)
    base, driver, rt = site["base"], browser, site["rt"]
    # The demo's one-time login link: a button to press, then it is used up.
    link = login_link(rt.settings, base)
    driver.get(link)
    driver.find_element(By.ID, "use-link").click()
    WebDriverWait(driver, WAIT).until(EC.url_contains("/pages/queue"))

    driver.find_element(By.LINK_TEXT, "Weights").click()
    spend = wait_for(driver, By.ID, "w-weights.spend")
    assert spend.get_attribute("value") == "0.25"
    shot(driver, "weights")
    for name, value in (("weights.spend", "0.05"), ("weights.complaint", "0.6"),
                        ("tiers.high", "0.3")):
        field = driver.find_element(By.ID, f"w-{name}")
        field.clear()
        field.send_keys(value)
    driver.find_element(By.ID, "preview").click()
    result = wait_for(driver, By.ID, "preview-result")
    assert re.search(r"11 open tickets; weights \w+ → \w+; \d+ change tier", result.text), result.text
    assert len(driver.find_elements(By.CSS_SELECTOR, "#preview-result svg.bars rect")) == 8
    assert "today:" in result.text and "proposed:" in result.text  # movers with both reasons
    shot(driver, "weights_preview")
    assert rt.store.weights_changes() == []  # a preview writes nothing

    version = rt.settings.weights.version()
    driver.find_element(By.ID, "save").click()
    saved = wait_for(driver, By.ID, "saved")
    assert "ranking.weights.spend" in saved.text
    audit = driver.find_element(By.ID, "audit").text
    assert "ranking.weights.spend" in audit and "0.25" in audit and "0.05" in audit
    assert "ranking.tiers.high" in audit
    shot(driver, "weights_saved")
    assert "spend = 0.05" in site["cfg"].read_text() and "# Clout settings" in site["cfg"].read_text()
    assert rt.settings.weights.version() != version  # in force without a restart

    # The link worked once: another browser session can't use it again.
    driver.delete_all_cookies()
    driver.get(link)
    assert "already used" in driver.find_element(By.TAG_NAME, "main").text
    no_script_ran(driver)
