"""A real headless Chromium from Debian's packages (`stack.sh install-browser`), driven by
Selenium through Debian's ChromeDriver: nothing is downloaded. Each page opened is checked for
console errors and photographed under .local/screenshots (ignored by git)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[1] / ".local" / "screenshots"
INSTALL_HINT = "run `infra/stack/stack.sh install-browser` (Debian's chromium and chromium-driver)"


@dataclass
class Browser:
    """One Chromium session against the console at `base_url`."""

    driver: webdriver.Chrome
    base_url: str
    console_errors: dict[str, list[str]] = field(default_factory=dict)

    def open(self, path: str, page: str, screenshot: str | None = None) -> WebElement:
        """Loads `path`, waits for `<main id="page" data-page=page>` and for the charts to be
        drawn, records the console's errors under `path` and saves a screenshot."""
        self.driver.get_log("browser")
        self.driver.get(self.base_url.rstrip("/") + path)
        main = self.wait_for(f'main#page[data-page="{page}"]', what=f"page {page} at {path}")
        self.wait_until_charts_drawn()
        self.console_errors[path] = [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
        ]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = screenshot or re.sub(r"[^a-z0-9]+", "-", f"{page}-{path}".lower()).strip("-")
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        return main

    def wait_for(self, css: str, what: str, timeout_s: float = 20) -> WebElement:
        try:
            return WebDriverWait(self.driver, timeout_s).until(
                lambda d: d.find_element(By.CSS_SELECTOR, css)
            )
        except TimeoutException:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what} ({css}); the page shows: "
                f"{self.driver.find_element(By.TAG_NAME, 'body').text[:1500]!r}"
            ) from None

    def wait_until_charts_drawn(self, timeout_s: float = 20) -> None:
        """Every chart of the page (a `<script type="application/json" id="<chart>-data">`
        beside its `<div id="<chart>">`; other JSON blobs have no such element) holds the
        traces Plotly drew."""
        script = (
            'const blobs = document.querySelectorAll(\'script[type="application/json"][id$="-data"]\');'
            "return [...blobs].every(b => {"
            "  const c = document.getElementById(b.id.slice(0, -5));"
            "  return !c || Array.isArray(c.data); });"
        )
        try:
            WebDriverWait(self.driver, timeout_s).until(lambda d: d.execute_script(script))
        except TimeoutException:
            raise AssertionError("the page's charts were not drawn") from None

    def chart(self, element_id: str) -> list[dict[str, Any]]:
        """The traces Plotly drew in `#element_id`: name, x and y of each."""
        traces = self.driver.execute_script(
            "const c = document.getElementById(arguments[0]);"
            "return c && Array.isArray(c.data) ? c.data.map(t => "
            "({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])})) : null;",
            element_id,
        )
        assert traces is not None, f"no chart drawn in #{element_id}"
        return traces

    def css(self, selector: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def submit(self, form_css: str, **fields: str) -> None:
        """Fills `fields` of the form and submits it, as a person would, and returns once
        the browser has left the page."""
        form = self.wait_for(form_css, what=f"the form {form_css}")
        for name, value in fields.items():
            element = form.find_element(By.NAME, name)
            if element.tag_name == "select":
                element.find_element(By.CSS_SELECTOR, f'option[value="{value}"]').click()
            else:
                element.clear()
                element.send_keys(value)
        # Every form posts and redirects: wait for the page it leaves, or the next lookup
        # may find an element of that old page (a #flash shown before, say). A mark on the
        # old page's window tells the pages apart; element staleness does not do it reliably
        # (Chromium may answer "Node ... does not belong to the document" instead).
        self.driver.execute_script("window.__mlopsLeaving = true;")
        form.find_element(By.CSS_SELECTOR, "[type=submit]").click()
        WebDriverWait(self.driver, 30, ignored_exceptions=[WebDriverException]).until(
            lambda d: d.execute_script(
                "return window.__mlopsLeaving !== true && document.readyState === 'complete';"
            )
        )


def chromium_options() -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextmanager
def chromium(base_url: str) -> Iterator[Browser]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, f"{', '.join(missing)} missing: {INSTALL_HINT}"
    driver = webdriver.Chrome(options=chromium_options(), service=Service(str(CHROMEDRIVER)))
    try:
        yield Browser(driver, base_url)
    finally:
        driver.quit()
