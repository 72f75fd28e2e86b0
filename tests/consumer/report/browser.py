"""Headless Chromium through Selenium, offline: the Debian packages' browser and driver,
named explicitly so Selenium Manager never looks for (or downloads) one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if not missing:
        return None
    found = {name: shutil.which(name) for name in ("chromium", "chromedriver")}
    return (f"headless Chromium is not installed: {', '.join(missing)} missing (on PATH: {found}). "
            "Run `make browser`, or install the Debian packages chromium and chromium-driver "
            "(apt-get install chromium chromium-driver).")


def start_browser(width: int = 1400, height: int = 1000):
    """A headless Chromium that cannot reach the network: no name resolves and every
    HTTP(S) request goes to a closed loopback port. It logs the page's network events
    (see requests_made)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def requests_made(driver) -> list[str]:
    """The URL of every request the page started since the last call (DevTools network
    events in the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
