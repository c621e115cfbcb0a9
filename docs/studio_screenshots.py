"""The README's pictures of ``reenact studio``: serve a checkpoint, open the page in headless chromium, upload a
source, move one slider, wait for the new render and save a screenshot.

    python docs/studio_screenshots.py --ckpt LPMM.ckpt --source face.png --slider p0 --value 2.5 \
        --out docs/studio_lpmm.png
    python docs/studio_screenshots.py --ckpt PECHEAD.ckpt --source face.png --slider yaw --value 25 \
        --out docs/studio_pechead.png

Needs the studio extra and Debian's ``chromium`` + ``chromium-driver`` (as the browser test).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--source", required=True, help="portrait to upload")
    parser.add_argument("--slider", required=True, help="slider name: p0..p39 (lpmm), yaw/pitch/roll/exprI (pechead)")
    parser.add_argument("--value", required=True)
    parser.add_argument("--examples", help="folder shown as 'pick a source'")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from reenact.studio.app import build_app, launch
    from reenact.studio.session import StudioSession

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    app = build_app(StudioSession.from_checkpoint(options.ckpt), examples=options.examples)
    launch(app, "127.0.0.1", port, allowed_paths=[options.examples] if options.examples else None, block=False)
    browser_options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1250"):
        browser_options.add_argument(argument)
    browser_options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    browser = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")), options=browser_options)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(f"http://127.0.0.1:{port}")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#source input[type=file]"))
        browser.find_element(By.CSS_SELECTOR, "#source input[type=file]").send_keys(str(Path(options.source).resolve()))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result img"))
        first = browser.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src")
        box = browser.find_element(By.CSS_SELECTOR, f"#slider-{options.slider} input[type=number]")
        box.clear()
        box.send_keys(options.value)
        time.sleep(0.5)
        box.send_keys(Keys.TAB)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src") != first)
        time.sleep(1.5)  # the new picture fades in
        browser.save_screenshot(options.out)
        print(f"wrote {options.out}")
    finally:
        browser.quit()
        app.close()


if __name__ == "__main__":
    main()
