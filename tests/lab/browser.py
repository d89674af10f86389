"""A real headless browser (Debian's chromium, driven through its chromedriver by selenium)
on a page the lab serves. It runs inside a lab node's network namespace, where the only
network is the lab's, so the browser can reach nothing else:

    ip netns exec NS python -m tests.lab.browser dashboard|cockpit URL USER SHOT [VM] < password

and prints what the page showed as one JSON line. `look` runs it from a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, ".artifacts", "screenshots")
WAIT = 90  # seconds a page may take to show what is asked (TCG lab, loaded CI machine)


def look(
    node_netns: str, page: str, url: str, user: str, password: str, shot: str, *args: str
) -> dict:
    """Run page() in the browser from node_netns; its findings, the screenshot at shot."""
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    proc = subprocess.run(
        ["ip", "netns", "exec", node_netns, sys.executable, "-m", "tests.lab.browser"]
        + [page, url, user, shot, *args],
        input=password,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=WAIT * 3,
    )
    assert proc.returncode == 0, f"browser on {url}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root, no user namespace sandbox here
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",  # the lab's self-signed certificates
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    # The system's chromedriver: selenium-manager downloads nothing.
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def _body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def dashboard(driver, url: str, user: str, password: str) -> dict:
    """Ceph's dashboard: log in, wait for the Cluster Status card to show a health."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, WAIT)
    wait.until(lambda d: d.find_elements(By.ID, "username"))
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password, Keys.ENTER)
    wait.until(lambda d: "Cluster Status" in _body(d) and "HEALTH_" in _body(d))
    words = _body(driver).split()
    return {
        "health": next(w for w in words if w.startswith("HEALTH_")),
        "url": driver.current_url,
        "text": _body(driver),
    }


def cockpit(driver, url: str, user: str, password: str, vm: str) -> dict:
    """Cockpit: log in, open Virtual machines, wait for vm's row and its state."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT)
    driver.get(url)
    wait.until(ec.visibility_of_element_located((By.ID, "login-user-input")))
    driver.find_element(By.ID, "login-user-input").send_keys(user)
    driver.find_element(By.ID, "login-password-input").send_keys(password)
    driver.find_element(By.ID, "login-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe.container-frame"))
    driver.get(url.rstrip("/") + "/machines")
    frame = (By.CSS_SELECTOR, 'iframe[name="cockpit1:localhost/machines"]')
    wait.until(ec.frame_to_be_available_and_switch_to_it(frame))
    row = f'tr[data-row-id="vm-{vm}-system"]'
    tcg = "#ignore-hw-virtualization-disabled-btn"  # shown where KVM is not usable
    shown = wait.until(
        lambda d: next((s for s in (row, tcg) if d.find_elements(By.CSS_SELECTOR, s)), False)
    )
    if shown == tcg:
        driver.find_element(By.CSS_SELECTOR, tcg).click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    state = f"vm-{vm}-system-state"
    wait.until(lambda d: d.find_element(By.ID, state).text.strip())
    found = {
        "name": driver.find_element(By.ID, f"vm-{vm}-system-name").text,
        "state": driver.find_element(By.ID, state).text,
        "text": _body(driver),
    }
    driver.switch_to.default_content()
    return found


PAGES = {"dashboard": dashboard, "cockpit": cockpit}


def main(page: str, url: str, user: str, shot: str, *args: str) -> None:
    password = sys.stdin.read()
    driver = _driver()
    try:
        found = PAGES[page](driver, url, user, password, *args)
    finally:
        driver.save_screenshot(shot)
        driver.quit()
    print(json.dumps(found))


if __name__ == "__main__":
    main(*sys.argv[1:])
