"""First render of the cost explorer on the shipped models, in Debian's headless Chromium.

Run: ``.venv/bin/python bench/explorer.py [--repeats 15]``

Starts the real ``serve`` process (shipped models, a free loopback port) and opens
``/explorer`` in a fresh browser context each round (empty cache, so every asset is
fetched), then once more in a warm context. "First render" is the page's own
``performance.mark`` after the first full render (table, chart, confusion matrix): time
from navigation start, including ``GET /models`` and the two ``POST /evaluate`` calls.
Prints the median and the range; the goal is under 1 s.

``--screenshot docs/explorer.png`` also writes the README's picture of the page (the
default view, reduced to a 256-colour palette to keep the file small).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "service"))
from _servicekit import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SHIPPED,
    free_port,
    serve_command,
    wait_for_ping,
)

MARK = "performance.getEntriesByName('explorer-first-render')[0].startTime"


def screenshot(browser, base: str, path: Path) -> None:
    from PIL import Image

    context = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    page.goto(f"{base}/explorer")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    page.screenshot(path=str(path), full_page=True)
    context.close()
    image = Image.open(path).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--screenshot", type=Path, help="also write a PNG of the page here")
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "COSTAWARE_MODEL_DIR": str(SHIPPED), "COSTAWARE_PORT": str(port)}
    env["COSTAWARE_HOST"] = "127.0.0.1"
    process = subprocess.Popen(
        serve_command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(base, process)
        httpx.get(f"{base}/explorer")  # the first request of a fresh process is not the page's
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            cold, warm, wall = [], [], []
            for _ in range(args.repeats):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{base}/explorer")
                page.wait_for_function("document.body.dataset.state === 'ready'")
                wall.append((time.perf_counter() - started) * 1000)
                cold.append(page.evaluate(MARK))
                page.reload()
                page.wait_for_function("document.body.dataset.state === 'ready'")
                warm.append(page.evaluate(MARK))
                context.close()
            if args.screenshot:
                screenshot(browser, base, args.screenshot)
            browser.close()
    finally:
        process.kill()
        process.communicate()

    def line(name: str, values: list[float]) -> str:
        return (
            f"{name:<34} median {statistics.median(values):7.1f} ms   "
            f"min {min(values):7.1f}   max {max(values):7.1f}"
        )

    print(f"cost explorer, shipped models, {args.repeats} rounds, headless Chromium, 2 cores")
    print(line("first render, cold cache", cold))
    print(line("first render, reload (warm cache)", warm))
    print(line("goto -> ready seen by Playwright", wall))
    print(f"goal: first render < 1000 ms; worst cold round {max(cold):.0f} ms")


if __name__ == "__main__":
    main()
