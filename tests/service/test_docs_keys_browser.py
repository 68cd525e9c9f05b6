"""``/docs`` in a real browser (Playwright driving Debian's headless Chromium) against the
real ``serve`` process with API keys: a user enters a key under "Authorize" and the
operations tried from the page send it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from _servicekit import CHROMIUM, CHROMIUM_ARGS, SHIPPED, running_serve
from playwright.sync_api import Page, expect, sync_playwright

KEY = "docs-browser-key-4471"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Iterator[tuple[str, Page]]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    cwd = tmp_path_factory.mktemp("cwd")
    with (
        running_serve(SHIPPED, cwd, COSTAWARE_API_KEYS=KEY) as (base, _),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        # Nothing leaves loopback: the page and its assets are the service's own.
        page.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith(base) else route.abort()
            ),
        )
        page.goto(f"{base}/docs")
        yield base, page
        browser.close()


def try_list_models(page: Page) -> str:
    """Run GET /models from its operation panel; the status the page shows."""
    operation = page.locator("#operations-models-list_models_models_get")
    if not operation.locator(".execute").count():
        if not operation.locator(".try-out__btn").count():
            operation.locator(".opblock-summary").click()
        operation.locator(".try-out__btn").click()
    # Wait for this click's answer and for the page to show it: the table may still hold
    # the previous run's row (a 401) for a moment after the click.
    with page.expect_response(lambda response: response.url.endswith("/models")) as answered:
        operation.locator(".execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text(re.compile(rf"^\s*{answered.value.status}"), timeout=15_000)
    return status.inner_text().strip()


def test_docs_take_a_key_and_send_it(page):
    base, page = page
    # Without a key the page's own request is refused, as any client's.
    assert try_list_models(page).startswith("401")

    page.locator(".auth-wrapper .authorize").click()
    page.locator(".modal-ux input").fill(KEY)
    page.locator(".modal-ux .auth-btn-wrapper .authorize").click()
    page.locator(".modal-ux .btn-done").click()

    with page.expect_request(f"{base}/models") as sent:
        assert try_list_models(page).startswith("200")
    assert sent.value.headers["authorization"] == f"Bearer {KEY}"
