"""The cost explorer on calibrated models, in a real browser against the real ``serve``
process: the "at Elkan's t*" column is the service's t* on the probability (and says so),
t* is not offered as a score threshold, and an uncalibrated model is marked as one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import test_explorer_browser as explorer
from _calibrated import EVEN
from _servicekit import running_serve
from playwright.sync_api import Browser

browser = explorer.browser  # the same fixture: one Chromium for the module


@pytest.fixture(scope="module")
def base_url(calibrated_dir, tmp_path_factory) -> Iterator[str]:
    with running_serve(calibrated_dir, tmp_path_factory.mktemp("cwd")) as (base, _):
        yield base


@pytest.fixture
def watched(browser: Browser, base_url: str) -> Iterator[explorer.Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield explorer.Watched(context.new_page(), base_url)
    finally:
        context.close()


def test_elkans_column_is_on_the_probability_and_uncalibrated_models_say_so(watched):
    costs = "&".join(f"{k}={v}" for k, v in EVEN.items())
    watched.open(f"/explorer?{costs}&model=medical")
    page = watched.page
    answer = explorer.evaluate(watched.base, {"cost_matrix": EVEN})
    by_model = {entry["model"]: entry for entry in answer["results"]}
    cells = {
        (cell["model"], cell["point"]): cell
        for cell in explorer.page_values(page)
        if cell["point"] == "elkan"
    }
    for name in ("medical", "builtin"):
        assert cells[name, "elkan"]["value"] == by_model[name]["elkan_threshold"]["expected_value"]
    elkan_text = page.eval_on_selector(
        '#models-table tr[data-model="medical"] td[data-point="elkan"] .t', "el => el.textContent"
    )
    assert elkan_text == "t* = 0.5 on probability"
    names = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#models-table tbody tr')]
            .map(tr => [tr.dataset.model, tr.querySelector('td.name').textContent]))"""
    )
    assert names["builtin"].endswith("uncalibrated")
    assert not names["medical"].endswith("uncalibrated")
    # A probability threshold is not a score threshold: the button is off for medical.
    assert page.is_disabled("#to-elkan")
    watched.screenshot("explorer-calibrated")
    watched.assert_clean()
