"""The cost explorer in a real browser: Playwright driving Debian's headless Chromium against
the real ``serve`` process on the shipped models.

Every figure the page shows is compared with ``POST /evaluate``'s answer for the same
matrix and data, sent by the test itself over HTTP. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import numpy as np
import pytest
from _calibrated import write_uncalibrated
from _servicekit import CHROMIUM, CHROMIUM_ARGS, REPO, SHIPPED, csv_body, running_serve
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright
from sklearn.datasets import load_breast_cancer

ARTIFACTS = REPO / "test-artifacts"
REFERENCE = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}
POINTS = ("card", "elkan", "chosen", "best", "treat_all", "treat_none")


# ---------------------------------------------------------------------------
# Fixtures: the real serve process -> a browser -> a watched page


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    with running_serve(SHIPPED, tmp_path_factory.mktemp("cwd")) as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A page with every request, console message and page error it caused recorded."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.requests: list[str] = []
        self.refused: list[str] = []
        self.console: list[str] = []
        self.failed: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on("request", lambda r: self.requests.append(r.url))
        page.route("**/*", self._on_route)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.console.append(f"{message.type}: {message.text}")

    def _on_route(self, route: Route, request: Request) -> None:
        # Nothing may leave the host: anything not for the service is refused and recorded.
        if urlsplit(request.url).hostname not in ("127.0.0.1", "localhost"):
            self.refused.append(request.url)
            route.abort()
        else:
            route.continue_()

    def open(self, path: str = "/explorer") -> None:
        self.page.goto(self.base + path)
        self.wait_ready()

    def renders(self) -> int:
        return int(self.page.evaluate("Number(document.body.dataset.renders || 0)"))

    def wait_ready(self, after: int = 0) -> None:
        self.page.wait_for_function(
            "n => document.body.dataset.state === 'ready' "
            "&& Number(document.body.dataset.renders || 0) > n",
            arg=after,
            timeout=15_000,
        )

    def change(self, selector: str, value: str) -> None:
        before = self.renders()
        self.page.fill(selector, value)
        self.wait_ready(before)

    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.page.url).query).items()}

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        assert self.console == []
        assert self.failed == []
        assert self.refused == []
        assert all(urlsplit(url).hostname == "127.0.0.1" for url in self.requests), self.requests


@pytest.fixture
def watched(browser: Browser, base_url: str) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield Watched(context.new_page(), base_url)
    finally:
        context.close()


# ---------------------------------------------------------------------------
# Reading the page, asking the service


def page_values(page: Page) -> list[dict[str, Any]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#models-table td[data-point]')].map(td => ({
            model: td.dataset.model, point: td.dataset.point,
            value: Number(td.dataset.value), per1000: Number(td.dataset.per1000),
            text: td.querySelector('.ev').textContent,
            per1000_text: td.querySelector('small').textContent,
        }))"""
    )


def dollars(text: str) -> float:
    """'-$15,282.86' (as Intl formats it) -> -15282.86."""
    match = re.fullmatch(r"(-?)\$([\d,]+(?:\.\d+)?)(?: /1,000)?", text.strip())
    assert match, f"not a dollar figure: {text!r}"
    return float(match.group(2).replace(",", "")) * (-1 if match.group(1) else 1)


def evaluate(
    base: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = httpx.post(f"{base}/evaluate", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def expected_points(at_card: dict, at_chosen: dict) -> dict[tuple[str, str], dict[str, float]]:
    """(model, point) -> the /evaluate value entry the page must show there."""
    expected = {}
    card = {entry["model"] or "posted scores": entry for entry in at_card["results"]}
    for entry in at_chosen["results"]:
        name = entry["model"] or "posted scores"
        expected[name, "card"] = card[name]
        expected[name, "elkan"] = entry["elkan_threshold"]
        expected[name, "chosen"] = entry
        expected[name, "best"] = entry["best_threshold"]
        expected[name, "treat_all"] = entry["treat_all"]
        expected[name, "treat_none"] = entry["treat_none"]
    return expected


def assert_page_equals_service(page: Page, at_card: dict, at_chosen: dict) -> int:
    expected = expected_points(at_card, at_chosen)
    shown = page_values(page)
    assert {(cell["model"], cell["point"]) for cell in shown} == set(expected)
    for cell in shown:
        want = expected[cell["model"], cell["point"]]
        where = f"{cell['model']} at {cell['point']}"
        # The exact figure behind the cell, and the figure a person reads, to the cent.
        assert cell["value"] == want["expected_value"], where
        assert abs(dollars(cell["text"]) - want["expected_value"]) <= 0.005 + 1e-9, where
        assert cell["per1000"] == want["per_1000_decisions"], where
        assert abs(dollars(cell["per1000_text"]) - want["per_1000_decisions"]) <= 0.5 + 1e-6
    ranks = page.evaluate(
        """() => [...document.querySelectorAll('#models-table tbody tr')].map(tr => [
            tr.dataset.model, Number(tr.querySelector('[data-rank=chosen]').textContent),
            Number(tr.querySelector('[data-rank=card]').textContent)])"""
    )
    card_rank = {r["model"] or "posted scores": r["rank"] for r in at_card["ranking"]}
    chosen_rank = [(r["model"] or "posted scores", r["rank"]) for r in at_chosen["ranking"]]
    assert [(name, rank) for name, rank, _ in ranks] == chosen_rank
    assert all(card_rank[name] == rank for name, _, rank in ranks)
    return len(shown)


def assert_confusion_equals_service(page: Page, entry: dict) -> None:
    cells = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#confusion-table td')]
            .map(td => [td.dataset.cell, [Number(td.dataset.count), Number(td.dataset.value),
                                          td.querySelector('small').textContent]]))"""
    )
    for name, (count, value, text) in cells.items():
        assert count == entry["confusion"][name]
        assert value == entry["confusion_value"][name]
        assert abs(dollars(text) - entry["confusion_value"][name]) <= 0.005 + 1e-9
    close = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#band-table td')]
            .map(td => [td.dataset.close, Number(td.textContent)]))"""
    )
    assert close == entry["close_confusions"]


def costs_from(query: dict[str, str]) -> dict[str, float]:
    return {k: float(query[k]) for k in ("tp", "fp", "tn", "fn")}


# ---------------------------------------------------------------------------
# Tests


def test_root_leads_to_the_page_which_loads_offline_without_errors(watched):
    watched.open("/")
    page = watched.page
    assert urlsplit(page.url).path == "/explorer"
    assert watched.query() == {
        **{k: f"{v:g}" for k, v in REFERENCE.items()},
        "model": "medical",
        "threshold": "0.5",
    }
    listed = httpx.get(f"{watched.base}/models").json()["models"]
    binary = [m["name"] for m in listed if m["task"] == "binary"]
    assert binary == ["builtin", "custom-5to1", "medical", "tuned"]
    names = [m["name"] for m in listed]
    assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == names
    # The multiclass wine model is listed as such; it is valued on its own (a value matrix).
    assert page.text_content("#model option[value=wine]") == "wine (multiclass)"
    assert not page.is_visible("#value-matrix") and not page.is_visible("#multiclass")
    assert page.locator("#models-table tbody tr").count() == 4
    assert page.locator("#chart svg polyline").count() == 4
    watched.screenshot("explorer-held-out")
    watched.assert_clean()
    # Everything the page loaded came from the service itself.
    paths = {urlsplit(url).path for url in watched.requests}
    assert paths == {
        "/",
        "/explorer",
        "/explorer/assets/explorer.css",
        "/explorer/assets/explorer.js",
        "/models",
        "/evaluate",
    }


def test_after_fn_changes_every_value_equals_evaluate_to_the_cent(watched):
    watched.open()
    page = watched.page
    base = watched.base
    at_card = evaluate(base, {"cost_matrix": REFERENCE})
    at_chosen = evaluate(base, {"cost_matrix": REFERENCE, "threshold": 0.5, "curve": True})
    assert assert_page_equals_service(page, at_card, at_chosen) == 4 * len(POINTS)

    watched.change("#fn", "-1000000")
    assert watched.query()["fn"] == "-1000000"
    costs = {**REFERENCE, "fn": -1000000.0}
    at_card = evaluate(base, {"cost_matrix": costs})
    at_chosen = evaluate(base, {"cost_matrix": costs, "threshold": 0.5, "curve": True})
    assert assert_page_equals_service(page, at_card, at_chosen) == 4 * len(POINTS)
    medical = next(e for e in at_chosen["results"] if e["model"] == "medical")
    assert_confusion_equals_service(page, medical)
    # The figure changed with fn (a test that cannot fail would not notice a stale page).
    assert at_chosen["results"][0]["treat_none"]["expected_value"] != pytest.approx(
        evaluate(base, {"cost_matrix": REFERENCE})["results"][0]["treat_none"]["expected_value"]
    )
    watched.screenshot("explorer-fn-changed")
    watched.assert_clean()


def test_query_string_round_trips(watched, browser):
    shared = {
        "tp": "-30000",
        "fp": "-2000.5",
        "tn": "0",
        "fn": "-400000",
        "model": "tuned",
        "threshold": "0.02",
        "prevalence": "0.1",
    }
    watched.open("/explorer?" + "&".join(f"{k}={v}" for k, v in shared.items()))
    page = watched.page
    assert watched.query() == shared
    fields = {k: page.input_value(f"#{k}") for k in shared}
    assert fields == shared
    body = {"cost_matrix": costs_from(shared), "prevalence": 0.1}
    at_card = evaluate(watched.base, body)
    at_chosen = evaluate(watched.base, {**body, "threshold": 0.02, "curve": True})
    assert_page_equals_service(page, at_card, at_chosen)
    tuned = next(e for e in at_chosen["results"] if e["model"] == "tuned")
    assert_confusion_equals_service(page, tuned)

    # Keyboard: the slider moves the threshold, the model list changes the detail.
    before = watched.renders()
    page.focus("#threshold-slider")
    page.keyboard.press("ArrowRight")
    watched.wait_ready(before)
    moved = watched.query()["threshold"]
    assert moved != "0.02"
    assert page.input_value("#threshold") == moved
    page.focus("#model")
    page.keyboard.press("ArrowUp")
    assert watched.query()["model"] != "tuned"
    shown = page_values(page)
    url = page.url

    # The link opens the same view in a fresh page.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        again = Watched(context.new_page(), watched.base)
        again.page.goto(url)
        again.wait_ready()
        assert again.query() == watched.query()
        assert {k: again.page.input_value(f"#{k}") for k in shared} == watched.query()
        assert page_values(again.page) == shown
        again.assert_clean()
    finally:
        context.close()
    watched.screenshot("explorer-shared-link")
    watched.assert_clean()


def breast_cancer_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    data = load_breast_cancer()
    rows = np.random.default_rng(17).choice(len(data.target), n, replace=False)
    return (1 - data.target[rows]).astype(float), data.data[rows]


def drop_file(page: Page, name: str, text: str) -> None:
    """A file dropped on the drop zone, as a person dragging it from their desktop."""
    page.evaluate(
        """([name, text]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], name, {type: 'text/csv'}));
            const zone = document.getElementById('drop-zone');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
        }""",
        [name, text],
    )


def test_a_dropped_csv_of_labeled_instances_is_evaluated(watched):
    watched.open()
    page = watched.page
    labels, features = breast_cancer_rows(60)
    body = csv_body(np.column_stack([labels, features]))
    before = watched.renders()
    drop_file(page, "patients.csv", body.decode())
    watched.wait_ready(before)
    assert "patients.csv" in page.text_content("#data-source")
    assert "posted text/csv" in page.text_content("#data-note")
    query = "tp=-35280&fp=-1287.67&tn=0&fn=-252000"
    headers = {"Content-Type": "text/csv"}
    at_card = httpx.post(f"{watched.base}/evaluate?{query}", content=body, headers=headers).json()
    at_chosen = httpx.post(
        f"{watched.base}/evaluate?{query}&threshold=0.5&curve=true", content=body, headers=headers
    ).json()
    assert at_chosen["data"] == "csv"
    assert at_chosen["results"][0]["n"] == 60
    assert assert_page_equals_service(page, at_card, at_chosen) == 4 * len(POINTS)
    watched.screenshot("explorer-dropped-instances")

    # Back to the held-out splits with one button.
    before = watched.renders()
    page.click("#held-out")
    watched.wait_ready(before)
    assert "held-out" in page.text_content("#data-note")
    watched.assert_clean()


def test_a_csv_of_scores_with_labels_is_evaluated(watched, tmp_path):
    watched.open()
    page = watched.page
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 80)
    scores = np.round(np.clip(0.5 * labels + 0.6 * rng.random(80) - 0.05, 0, 1), 4)
    path = tmp_path / "scores.csv"
    path.write_text(
        "label,score\n" + "".join(f"{y},{s}\n" for y, s in zip(labels, scores, strict=True))
    )
    before = watched.renders()
    page.set_input_files("#csv", str(path))  # the file chooser, as from the keyboard
    watched.wait_ready(before)
    assert "scores produced elsewhere" in page.text_content("#data-source")
    body = {"cost_matrix": REFERENCE, "scores": scores.tolist(), "labels": labels.tolist()}
    at_card = evaluate(watched.base, body)
    at_chosen = evaluate(watched.base, {**body, "threshold": 0.5, "curve": True})
    assert assert_page_equals_service(page, at_card, at_chosen) == len(POINTS)
    assert_confusion_equals_service(page, at_chosen["results"][0])
    watched.screenshot("explorer-dropped-scores")
    watched.assert_clean()


def test_a_bad_csv_shows_the_service_error_naming_row_and_column(watched):
    watched.open()
    labels, features = breast_cancer_rows(5)
    rows = csv_body(np.column_stack([labels, features])).decode().splitlines()
    rows[2] = "1," + ",".join(["oops", *rows[2].split(",")[2:]])
    before_state = watched.renders()
    drop_file(watched.page, "bad.csv", "\n".join(rows) + "\n")
    watched.page.wait_for_function("document.body.dataset.state === 'error'")
    error = watched.page.text_content("#error")
    assert "row 3" in error
    assert "column 2" in error
    assert "dimmed, are for the last inputs it accepted" in error
    assert watched.renders() == before_state
    # The browser logs the refused request itself; nothing else may have gone wrong.
    assert all("422" in line for line in watched.console), watched.console


CONTROLS = {"preset", "tp", "fp", "tn", "fn", "model", "threshold-slider", "threshold"}
CONTROLS |= {"to-card", "to-elkan", "to-best", "prevalence", "csv", "held-out"}


def reached_by_tab(page: Page) -> set[str]:
    """The ids of the elements Tab moves through from #preset on."""
    reached = set()
    page.focus("#preset")
    for _ in range(30):
        reached.add(page.evaluate("document.activeElement.id"))
        page.keyboard.press("Tab")
    return reached


def disabled_controls(page: Page) -> set[str]:
    return set(
        page.evaluate(
            "ids => ids.filter(id => document.getElementById(id).disabled)", sorted(CONTROLS)
        )
    )


@pytest.fixture(scope="module")
def uncalibrated_base_url(tmp_path_factory) -> Iterator[str]:
    """The real serve process on an uncalibrated copy of medical (no calibration map, as
    an older card or ``--calibration none``) beside the shipped, calibrated builtin."""
    models = tmp_path_factory.mktemp("models")
    write_uncalibrated(models / "medical", "medical")
    shutil.copytree(SHIPPED / "builtin", models / "builtin")
    with running_serve(models, tmp_path_factory.mktemp("cwd")) as (base, _):
        yield base


def test_every_input_has_a_label_and_is_reachable_by_keyboard(watched):
    watched.open()
    page = watched.page
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input, select')]
            .filter(el => el.labels.length === 0 && !el.getAttribute('aria-label'))
            .map(el => el.id)"""
    )
    assert unlabeled == []
    # Every control the page offers is reachable by Tab. A disabled one is out of the tab
    # order and need not be: the only one is Elkan's t*, because the model shown is
    # calibrated and its t* is a probability, not a threshold on the score.
    selected = page.eval_on_selector("#model", "el => el.value")
    entry = next(
        e
        for e in evaluate(watched.base, {"cost_matrix": REFERENCE})["results"]
        if e["model"] == selected
    )
    assert entry["calibrated"] is True
    assert entry["elkan_threshold"]["applied_to"] == "probability"
    assert disabled_controls(page) == {"to-elkan"}
    reached = reached_by_tab(page)
    assert CONTROLS - {"to-elkan"} <= reached
    assert "to-elkan" not in reached
    # The slider reaches the low thresholds: Home is 0.0001, a sixth of the way 0.001.
    for key, expected in (("Home", "0.0001"), ("End", "1")):
        before = watched.renders()
        page.focus("#threshold-slider")
        page.keyboard.press(key)
        watched.wait_ready(before)
        assert watched.query()["threshold"] == expected
    page.eval_on_selector(
        "#threshold-slider", "el => { el.value = 167; el.dispatchEvent(new Event('input')); }"
    )
    page.wait_for_function("document.getElementById('threshold').value === '0.001'")
    watched.assert_clean()


def test_elkans_threshold_by_keyboard_for_an_uncalibrated_model(browser, uncalibrated_base_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        watched = Watched(context.new_page(), uncalibrated_base_url)
        watched.open()
        page = watched.page
        choose(watched, "medical")
        results = {
            e["model"]: e for e in evaluate(watched.base, {"cost_matrix": REFERENCE})["results"]
        }
        assert results["medical"]["calibrated"] is False
        assert results["medical"]["elkan_threshold"]["applied_to"] == "score"
        assert page.locator('#models-table tr[data-model="medical"] .uncalibrated').count() == 1
        # t* is a point on the score axis: the button is enabled and in the tab order.
        assert disabled_controls(page) == set()
        assert reached_by_tab(page) >= CONTROLS
        # Elkan's t* by keyboard: the threshold becomes the service's t* for the matrix.
        before = watched.renders()
        page.focus("#to-elkan")
        page.keyboard.press("Enter")
        watched.wait_ready(before)
        t_star = results["medical"]["elkan_threshold"]
        assert float(watched.query()["threshold"]) == t_star["value"]
        # The calibrated model beside it: its t* is a probability, so the button is off.
        assert results["builtin"]["calibrated"] is True
        assert page.locator('#models-table tr[data-model="builtin"] .uncalibrated').count() == 0
        choose(watched, "builtin")
        assert disabled_controls(page) == {"to-elkan"}
        assert "to-elkan" not in reached_by_tab(page)
        watched.assert_clean()
    finally:
        context.close()


API_KEY = "page-key.1"


@pytest.fixture(scope="module")
def keyed_base_url(tmp_path_factory) -> Iterator[str]:
    """The real serve process with API keys configured (COSTAWARE_API_KEYS)."""
    cwd = tmp_path_factory.mktemp("cwd")
    with running_serve(SHIPPED, cwd, COSTAWARE_API_KEYS=f"{API_KEY},another") as (base, _):
        yield base


def test_with_api_keys_the_page_asks_for_one_and_keeps_it_in_the_tab(browser, keyed_base_url):
    base = keyed_base_url
    assert httpx.post(f"{base}/evaluate", json={"cost_matrix": REFERENCE}).status_code == 401
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        watched = Watched(context.new_page(), base)
        page = watched.page
        sent: list[str | None] = []
        page.on(
            "request",
            lambda r: (
                sent.append(r.headers.get("authorization"))
                if urlsplit(r.url).path in ("/models", "/evaluate")
                else None
            ),
        )
        page.goto(f"{base}/explorer")  # the page and its assets are open
        page.wait_for_selector("#key-dialog[open]")
        watched.screenshot("explorer-key-dialog")
        page.fill("#api-key", "not a key")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.getElementById('key-reason').textContent.includes('refused')"
        )
        page.fill("#api-key", API_KEY)
        page.keyboard.press("Enter")
        watched.wait_ready()
        assert page.evaluate("sessionStorage.getItem('costaware.apiKey')") == API_KEY
        assert page.evaluate("localStorage.length") == 0
        assert "page-key" not in page.url
        headers = {"Authorization": f"Bearer {API_KEY}"}
        at_card = httpx.post(
            f"{base}/evaluate", json={"cost_matrix": REFERENCE}, headers=headers
        ).json()
        at_chosen = httpx.post(
            f"{base}/evaluate",
            json={"cost_matrix": REFERENCE, "threshold": 0.5, "curve": True},
            headers=headers,
        ).json()
        assert assert_page_equals_service(page, at_card, at_chosen) == 4 * len(POINTS)
        assert sent[0] is None
        assert "Bearer not a key" in sent
        assert sent[-1] == f"Bearer {API_KEY}"
        # A reload in the same tab keeps the key: no dialog, the figures come at once.
        count = len(sent)
        page.reload()
        watched.wait_ready()
        assert not page.is_visible("#key-dialog")
        assert set(sent[count:]) == {f"Bearer {API_KEY}"}
        watched.screenshot("explorer-api-key")
        # The browser logs each 401 it was answered; nothing else may have gone wrong.
        assert all("401" in line for line in watched.console), watched.console
        assert watched.refused == []
    finally:
        context.close()
    # Another tab (context) has no key: session storage only.
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{base}/explorer")
        page.wait_for_selector("#key-dialog[open]")
        assert page.evaluate("sessionStorage.length") == 0
    finally:
        context.close()


def test_a_link_to_a_model_the_page_cannot_show_says_why(watched):
    watched.open("/explorer?model=nope")
    assert watched.page.input_value("#model") == "medical"
    assert 'model "nope" is not served; showing medical' in watched.page.text_content("#error")
    assert watched.query()["model"] == "medical"
    watched.assert_clean()


# ---------------------------------------------------------------------------
# A multiclass model: the value matrix editor, the confusion in counts and dollars, the
# decision rule against argmax and the best single class


def wine_matrix(base: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    card = httpx.get(f"{base}/models/wine", headers=headers).json()
    return {"classes": card["value_matrix"]["classes"], "values": card["value_matrix"]["values"]}


def wine_body(matrix: dict[str, Any]) -> dict[str, Any]:
    """The request the page sends for the held-out split of wine."""
    return {"cost_matrix": matrix, "models": ["wine"]}


def choose(watched: Watched, model: str) -> None:
    before = watched.renders()
    watched.page.select_option("#model", model)
    watched.wait_ready(before)


def multiclass_shown(page: Page) -> dict[str, Any]:
    return page.evaluate(
        """() => ({
            rows: Object.fromEntries([...document.querySelectorAll('#mc-table tbody tr')]
                .map(tr => [tr.dataset.point, {
                    value: Number(tr.dataset.value), total: Number(tr.dataset.total),
                    text: tr.querySelector('.ev').textContent,
                    total_text: tr.querySelector('.total').textContent}])),
            cells: [...document.querySelectorAll('#mc-confusion-table td')].map(td => ({
                truth: td.dataset.truth, decided: td.dataset.decided,
                count: Number(td.dataset.count), value: Number(td.dataset.value),
                text: td.querySelector('small').textContent})),
            matrix: [...document.querySelectorAll('#vm-table tbody tr')]
                .map(tr => [...tr.querySelectorAll('input')].map(input => input.value)),
        })"""
    )


def assert_multiclass_equals_service(page: Page, answer: dict[str, Any]) -> None:
    (entry,) = answer["results"]
    best = entry["best_single_class"]
    expected = {
        "rule": entry,
        "argmax": entry["argmax_probability"],
        "best_single": best,
        **{f"always:{c}": entry["always"][c] for c in entry["classes"] if c != best["class"]},
    }
    shown = multiclass_shown(page)
    assert set(shown["rows"]) == set(expected)
    for point, row in shown["rows"].items():
        want = expected[point]
        assert row["value"] == want["expected_value"], point
        assert row["total"] == want["total_value"], point
        assert abs(dollars(row["text"]) - want["expected_value"]) <= 0.005 + 1e-9, point
        assert abs(dollars(row["total_text"]) - want["total_value"]) <= 0.005 + 1e-9, point
    classes = entry["classes"]
    assert len(shown["cells"]) == len(classes) ** 2
    for cell in shown["cells"]:
        i, j = classes.index(cell["truth"]), classes.index(cell["decided"])
        assert cell["count"] == entry["confusion"]["counts"][i][j]
        assert cell["value"] == entry["confusion"]["value"][i][j]
        assert abs(dollars(cell["text"]) - entry["confusion"]["value"][i][j]) <= 0.005 + 1e-9
    text = page.text_content("#mc-table")
    assert f"always {best['class']}" in text


def test_choosing_wine_shows_its_matrix_and_changing_a_cell_changes_the_dollars(watched):
    watched.open()
    page = watched.page
    base = watched.base
    choose(watched, "wine")
    matrix = wine_matrix(base)
    # The editor is seeded from the card's matrix; the binary controls make way for it.
    shown = multiclass_shown(page)
    assert [[float(v) for v in row] for row in shown["matrix"]] == matrix["values"]
    assert page.is_visible("#value-matrix") and page.is_visible("#multiclass")
    assert not page.is_visible("#values") and not page.is_visible("#threshold")
    assert not page.is_visible("#summary") and not page.is_visible("#curve")
    before = evaluate(base, wine_body(matrix))
    assert before["data"] == "held_out"
    assert_multiclass_equals_service(page, before)
    watched.screenshot("explorer-multiclass")

    # truth class_1, decided class_2: the cell where the held-out split has confusions.
    watched.change("#vm-1-2", "-200")
    changed = {**matrix, "values": [list(row) for row in matrix["values"]]}
    changed["values"][1][2] = -200.0
    after = evaluate(base, wine_body(changed))
    assert_multiclass_equals_service(page, after)
    figures = [(r["expected_value"], r["confusion"]["value"]) for r in after["results"]]
    assert figures != [(r["expected_value"], r["confusion"]["value"]) for r in before["results"]]
    # The view is a link: model and matrix in the query string.
    query = watched.query()
    assert query["model"] == "wine"
    assert json.loads(query["value_matrix"]) == changed
    watched.screenshot("explorer-multiclass-changed")

    # Back to a binary model: its table again.
    choose(watched, "medical")
    assert page.is_visible("#summary") and not page.is_visible("#multiclass")
    assert page.locator("#models-table tbody tr").count() == 4
    watched.assert_clean()


def test_a_link_opens_the_multiclass_view_with_its_matrix(watched):
    matrix = wine_matrix(watched.base)
    linked = {**matrix, "values": [[v + 1 for v in row] for row in matrix["values"]]}
    watched.open("/explorer?" + urlencode({"model": "wine", "value_matrix": json.dumps(linked)}))
    shown = multiclass_shown(watched.page)
    assert [[float(v) for v in row] for row in shown["matrix"]] == linked["values"]
    answer = evaluate(watched.base, wine_body(linked))
    assert_multiclass_equals_service(watched.page, answer)
    watched.assert_clean()


@pytest.mark.parametrize("cell", ["abc", "", "1e400"])
def test_a_bad_cell_shows_the_service_error_naming_it(watched, cell):
    watched.open("/explorer?model=wine")
    page = watched.page
    matrix = wine_matrix(watched.base)
    shown_before = multiclass_shown(page)
    before = watched.renders()
    page.fill("#vm-0-1", cell)
    page.wait_for_function("document.body.dataset.state === 'error'")
    sent = {**matrix, "values": [list(row) for row in matrix["values"]]}
    sent["values"][0][1] = cell
    response = httpx.post(f"{watched.base}/evaluate", json=wine_body(sent), timeout=30)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("cost_matrix.values[0][1]")
    error = page.text_content("#error")
    assert f"422: {detail}" in error
    assert "dimmed, are for the last inputs it accepted" in error
    assert page.get_attribute("#vm-0-1", "aria-invalid") == "true"
    assert watched.renders() == before
    assert multiclass_shown(page)["rows"] == shown_before["rows"]
    watched.screenshot("explorer-multiclass-bad-cell")
    # Mended, the figures come back and the mark goes.
    page.fill("#vm-0-1", "-20")
    watched.wait_ready(before)
    assert page.get_attribute("#vm-0-1", "aria-invalid") is None
    assert page.is_hidden("#error")
    assert all("422" in line for line in watched.console), watched.console


def test_a_dropped_csv_of_wine_rows_is_valued_by_the_service(watched):
    from sklearn.datasets import load_wine

    watched.open("/explorer?model=wine")
    page = watched.page
    data = load_wine()
    classes = wine_matrix(watched.base)["classes"]
    rows = range(0, len(data.target), 5)
    text = "".join(
        f"{classes[data.target[r]]},{','.join(map(repr, data.data[r].tolist()))}\n" for r in rows
    )
    before = watched.renders()
    drop_file(page, "lots.csv", text)
    watched.wait_ready(before)
    query = urlencode({"value_matrix": json.dumps(wine_matrix(watched.base)), "models": "wine"})
    response = httpx.post(
        f"{watched.base}/evaluate?{query}",
        content=text.encode(),
        headers={"Content-Type": "text/csv"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["data"] == "csv" and answer["results"][0]["n"] == len(rows)
    assert_multiclass_equals_service(page, answer)
    assert "text/csv" in page.text_content("#mc-note")
    watched.assert_clean()


def test_with_api_keys_the_multiclass_view_asks_for_one(browser, keyed_base_url):
    base = keyed_base_url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        watched = Watched(context.new_page(), base)
        page = watched.page
        page.goto(f"{base}/explorer?model=wine")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#api-key", API_KEY)
        page.keyboard.press("Enter")
        watched.wait_ready()
        headers = {"Authorization": f"Bearer {API_KEY}"}
        matrix = wine_matrix(base, headers)
        assert_multiclass_equals_service(page, evaluate(base, wine_body(matrix), headers))
        watched.change("#vm-2-2", "90")
        matrix["values"][2][2] = 90.0
        assert_multiclass_equals_service(page, evaluate(base, wine_body(matrix), headers))
        watched.screenshot("explorer-multiclass-api-key")
        assert all("401" in line for line in watched.console), watched.console
        assert watched.refused == []
    finally:
        context.close()
