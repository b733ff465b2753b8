"""The web app end to end in a real headless browser: Debian's `chromium`, driven by
Selenium through Debian's `chromedriver` (nothing is downloaded), against a real
`agentic-loop serve` process whose model is the real ChatOllama client talking to the
Ollama-protocol test server.

Set AGENTIC_LOOP_SCREENSHOTS=docs to write the README's screenshots there."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import skip_unless_ci
from ollama_server import OllamaTestServer, Reply, last_prompt, step_of
from test_web_serve import start_serve, stop

pytestmark = pytest.mark.integration

PLAN = ["Choose a beach within two hours", "Check the tides and weather", "Pack for the day"]
RESULTS = {
    1: "Brighton: 1 h by train, a shingle beach with a pier.",
    2: "Low tide 11:40; sunny, 21 °C, light wind from the west.",
    3: "Towel, sun cream, water, a <b>windbreak</b> and [a map](https://example.com).",
}
ANSWER = "Take the 9:10 train to Brighton, swim around low tide at 11:40, and bring a windbreak."
TASK = "Plan a day at the seaside"
HOSTILE_TASK = "Write release notes for v2 <script>document.title='owned'</script>"


def find_browser() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def programs() -> tuple[str, str]:
    found = find_browser()
    if found is None:
        skip_unless_ci(
            "Chromium or its driver is missing (apt-get install chromium chromium-driver)"
        )
    return found


@pytest.fixture
def step_two_held() -> Iterator[threading.Event]:
    release = threading.Event()
    yield release
    release.set()


@pytest.fixture
def ollama(step_two_held: threading.Event) -> Iterator[OllamaTestServer]:
    def reply(request: dict[str, Any]) -> Reply:
        if "Break this task into numbered steps" in last_prompt(request):
            numbered = "\n".join(f"{i}. {step}" for i, step in enumerate(PLAN, 1))
            return Reply(f"Here is the plan:\n\n{numbered}")
        step = step_of(request)
        if step is not None:
            return Reply(RESULTS[step], hold=step_two_held if step == 2 else None)
        return Reply(ANSWER)

    with OllamaTestServer(reply) as server:
        yield server


@pytest.fixture
def serve(tmp_path: Path, ollama: OllamaTestServer) -> Iterator[str]:
    """`agentic-loop serve` on a free port; yields its address."""
    process, address = start_serve(tmp_path / "runs.sqlite", ollama)
    try:
        yield address
    finally:
        errors = stop(process)
    assert "Traceback" not in errors, errors


@pytest.fixture
def browser(programs: tuple[str, str], tmp_path: Path, monkeypatch) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager never runs
    binary, driver_path = programs
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,1100",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("AGENTIC_LOOP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def until(driver: Any, check: Callable[[Any], Any], timeout: float = 30) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(check)


def text_of(driver: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector).text


def step_status(driver: Any, number: int) -> str:
    return text_of(driver, f'#steps li[data-number="{number}"] .step-status')


def test_start_review_watch_and_answer_in_a_browser(
    browser: Any, serve: str, step_two_held: threading.Event, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    folder = shots(tmp_path)
    browser.get(serve + "new")
    browser.find_element(By.ID, "task").send_keys(TASK)
    assert browser.find_element(By.ID, "model").get_attribute("value") == "ollama:test-model"
    browser.find_element(By.ID, "max_steps").send_keys("5")
    browser.find_element(By.ID, "review").click()
    browser.find_element(By.ID, "start").click()

    # The plan waits for review: the page shows it with the review form.
    until(browser, lambda d: "/runs/run-" in d.current_url)
    until(browser, lambda d: text_of(d, "#status") == "awaiting review")
    proposed = [item.text for item in browser.find_elements(By.CSS_SELECTOR, ".proposed li")]
    assert proposed == PLAN
    assert text_of(browser, "#task") == TASK
    assert browser.title.endswith("agentic-loop")
    browser.find_element(By.CSS_SELECTOR, "form.question button.approve").click()

    # The steps appear as they run, over the WebSocket: the page is not reloaded.
    until(browser, lambda d: text_of(d, "#status") == "running")
    until(browser, lambda d: text_of(d, "#connection") == "live")
    browser.execute_script("window.stillThisPage = true")
    until(browser, lambda d: step_status(d, 1) == "completed")
    until(browser, lambda d: step_status(d, 2) == "running")
    assert browser.execute_script("return window.stillThisPage") is True
    assert RESULTS[1] in text_of(browser, '#steps li[data-number="1"] .result')
    assert step_status(browser, 3) == "pending"
    browser.save_screenshot(str(folder / "run-page-live.png"))

    step_two_held.set()
    until(browser, lambda d: text_of(d, "#status") == "completed")
    assert [step_status(browser, n) for n in (1, 2, 3)] == ["completed"] * 3
    assert text_of(browser, "#answer") == ANSWER
    third = text_of(browser, '#steps li[data-number="3"] .result')
    assert third == RESULTS[3]  # the tags and the Markdown link stay text
    assert not browser.find_elements(By.CSS_SELECTOR, "#steps b, #steps a")
    assert browser.execute_script(
        "const img = document.getElementById('picture'); return img.complete && img.naturalWidth"
    )
    browser.save_screenshot(str(folder / "run-page.png"))

    # A second run waits for its review; the runs page lists both, tasks shown as text.
    browser.get(serve + "new")
    browser.find_element(By.ID, "task").send_keys(HOSTILE_TASK)
    browser.find_element(By.ID, "review").click()
    browser.find_element(By.ID, "start").click()
    until(browser, lambda d: text_of(d, "#status") == "awaiting review")
    assert text_of(browser, "#task") == HOSTILE_TASK
    browser.get(serve)
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, ".status").text for row in rows] == [
        "awaiting review",
        "completed",
    ]
    assert "3/3" in rows[1].text and ANSWER[:40] in rows[1].text
    assert HOSTILE_TASK in rows[0].text
    assert browser.title == "Runs · agentic-loop"  # no script of the task ran
    browser.save_screenshot(str(folder / "runs-page.png"))

    # The plan is rejected from elsewhere: the runs page shows it by itself.
    second = rows[0].find_element(By.CSS_SELECTOR, "a").text
    (question,) = httpx.get(f"{serve}api/runs/{second}").json()["questions"]
    value = browser.get_cookie("agentic_loop_csrf")["value"]
    rejected = httpx.post(
        f"{serve}runs/{second}/answer",
        data={"csrf": value, "question": question["id"], "action": "reject"},
        cookies={"agentic_loop_csrf": value},
    )
    assert rejected.status_code == 303
    until(browser, lambda d: text_of(d, "#runs tbody tr .status") == "failed")


def test_a_page_open_across_a_server_restart_shows_the_run_interrupted_and_resumes_it(
    browser: Any, ollama: OllamaTestServer, step_two_held: threading.Event, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    db = tmp_path / "runs.sqlite"
    process, address = start_serve(db, ollama)
    try:
        browser.get(address + "new")
        browser.find_element(By.ID, "task").send_keys(TASK)
        browser.find_element(By.ID, "start").click()
        until(browser, lambda d: step_status(d, 2) == "running")
        assert step_status(browser, 1) == "completed"
    finally:
        errors = stop(process)  # step 2 is cut short: the run stays stored, unfinished
    assert "Traceback" not in errors, errors
    until(browser, lambda d: text_of(d, "#connection") == "reconnecting…")

    port = int(address.rstrip("/").rsplit(":", 1)[1])
    process, address = start_serve(db, ollama, port=port)
    try:
        # The page reconnects by itself and catches up from the store.
        until(browser, lambda d: text_of(d, "#status") == "interrupted")
        assert step_status(browser, 1) == "completed" and step_status(browser, 2) == "pending"
        step_two_held.set()
        browser.find_element(By.ID, "resume").click()
        until(browser, lambda d: text_of(d, "#status") == "completed")
        assert text_of(browser, "#answer") == ANSWER
        assert [step_status(browser, n) for n in (1, 2, 3)] == ["completed"] * 3
    finally:
        errors = stop(process)
    assert "Traceback" not in errors, errors
