"""The value report against numpy: realized value, expected value and counts per window and
version equal what numpy computes from the answers the service gave and the outcomes
posted (to the cent; expected within 1e-9 relative). Binary decisions under the card's,
a posted and a per-instance matrix, and multiclass under the card's and a posted one, across
a model replacement (two versions of one model in one report). Then /outcomes' refusals."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from _servicekit import FEATURES, SHIPPED, LogisticSpec, write_model
from fastapi.testclient import TestClient

from costaware.card import OutcomeValues, read_any_card, write_card
from service.app import create_app
from service.settings import Settings

ADMIN = {"Authorization": "Bearer adm"}
BINARY = "fx"
PHASE_SECONDS = 1.0
CARD_COSTS = OutcomeValues(tp=-3.5, fp=-12.25, tn=0.0, fn=-180.0)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    card = write_model(root / BINARY, BINARY, LogisticSpec.random(11), threshold=0.4)
    write_card(root / BINARY, card.model_copy(update={"cost_matrix": CARD_COSTS}))
    shutil.copytree(SHIPPED / "wine", root / "wine")
    log = tmp_path_factory.mktemp("log") / "decisions.sqlite"
    settings = Settings(
        model_dir=root,
        default_model=BINARY,
        admin_keys="adm",
        decision_log=f"sqlite+pysqlite:///{log}",
    )
    with TestClient(create_app(settings)) as client:
        yield client, root


def card_matrix(card) -> np.ndarray:
    if getattr(card, "classes", None):
        return np.asarray(card.value_matrix.values, dtype=np.float64)
    c = card.cost_matrix
    return np.array([[c.tn, c.fp], [c.fn, c.tp]], dtype=np.float64)


def binary_p(prediction) -> float:
    return (
        prediction["probability"] if prediction["probability"] is not None else prediction["score"]
    )


def run_phases(client, root):
    """Four phases a second apart; each decision's expected value, the matrix column it was
    decided under and its window (phase), from the answers alone."""
    rng = np.random.default_rng(5)
    wine = read_any_card(root / "wine")
    wine_rows = [[float(rng.uniform(r.min, r.max)) for r in wine.feature_ranges] for _ in range(30)]
    logged = []  # (id, model, version, phase, probabilities, decision, matrix K x K)

    def keep(answer, model, phase, matrices, multiclass=False, classes=None):
        for i, p in enumerate(answer["predictions"]):
            if multiclass:
                probs = np.array([p["probabilities"][c] for c in classes])
                decision = classes.index(p["decision"])
            else:
                q = binary_p(p)
                probs = np.array([1.0 - q, q])
                decision = int(p["label"] if "decision" not in p else p["decision"])
            m = matrices[i] if np.ndim(matrices) == 3 else matrices
            logged.append((p["id"], model, answer["version"], phase, probs, decision, m))

    start = time.time()
    for phase in range(4):
        # every request of a phase well inside its own second-long window
        time.sleep(max(0.0, start + phase * PHASE_SECONDS + 0.2 - time.time()))
        x = rng.normal(0, 4, (25, len(FEATURES))).round(3).tolist()
        fx_card = read_any_card(root / BINARY) if phase < 3 else None
        if phase == 0:
            answer = client.post("/predict", json={"instances": x}).json()
            keep(answer, BINARY, phase, card_matrix(fx_card))
            posted = {"tp": -2.0, "fp": -7.5, "tn": 1.25, "fn": -40.0}
            answer = client.post("/predict", json={"instances": x, "cost_matrix": posted}).json()
            m = np.array([[posted["tn"], posted["fp"]], [posted["fn"], posted["tp"]]])
            keep(answer, BINARY, phase, m)
        if phase == 1:
            n = len(x)
            per = {k: rng.uniform(-50, 5, n).round(2).tolist() for k in ("tp", "fp", "tn", "fn")}
            answer = client.post("/predict", json={"instances": x, "cost_matrix": per}).json()
            m = np.stack(
                [
                    np.stack([per["tn"], per["fp"]], -1),
                    np.stack([per["fn"], per["tp"]], -1),
                ],
                -2,
            )
            keep(answer, BINARY, phase, m)
            answer = client.post("/predict", json={"model": "wine", "instances": wine_rows}).json()
            keep(answer, "wine", phase, card_matrix(wine), True, list(wine.classes))
            values = rng.uniform(-10, 10, (3, 3)).round(2)
            posted = {"classes": list(wine.classes), "values": values.tolist()}
            answer = client.post(
                "/predict", json={"model": "wine", "instances": wine_rows, "cost_matrix": posted}
            ).json()
            keep(answer, "wine", phase, values, True, list(wine.classes))
        if phase == 2:
            # the replacement: a new graph and version of the same model
            card = write_model(root / BINARY, BINARY, LogisticSpec.random(12), threshold=0.6)
            write_card(
                root / BINARY,
                card.model_copy(update={"version": "test-2", "cost_matrix": CARD_COSTS}),
            )
            assert client.post(f"/models/{BINARY}/load", headers=ADMIN).json()["changed"]
        if phase >= 2:
            card = read_any_card(root / BINARY)
            answer = client.post("/predict", json={"instances": x}).json()
            keep(answer, BINARY, phase, card_matrix(card))
    return start, logged


def test_value_report_equals_numpy(served):
    client, root = served
    start, logged = run_phases(client, root)
    client.app.state.decision_log.flush()
    rng = np.random.default_rng(9)
    labels = {}
    for entry in logged:
        if rng.random() < 0.7:
            labels[entry[0]] = int(rng.integers(0, len(entry[4])))
    wine_classes = list(read_any_card(root / "wine").classes)
    outcomes = [
        {"id": i, "label": wine_classes[y] if model == "wine" else y}
        for (i, model, *_rest) in logged
        if (y := labels.get(i)) is not None
    ]
    answer = client.post("/outcomes", json={"outcomes": outcomes}).json()
    assert answer == {"stored": len(outcomes), "replaced": 0, "unchanged": 0, "unknown": []}
    # the same again changes nothing
    again = client.post("/outcomes", json={"outcomes": outcomes}).json()
    assert again["stored"] == 0 and again["unchanged"] == len(outcomes)

    for model in (BINARY, "wine"):
        report = client.get(
            f"/models/{model}/value",
            params={"from": iso(start), "to": iso(start + 4 * PHASE_SECONDS), "window": "PT1S"},
        ).json()
        # the oracle: numpy on the answers and the outcomes
        expected_keys = sorted({(e[3], e[2]) for e in logged if e[1] == model})
        seen = sorted(
            (round(datetime.fromisoformat(w["from"]).timestamp() - start), v["version"])
            for w in report["windows"]
            for v in w["versions"]
        )
        assert seen == expected_keys
        for phase, version in expected_keys:
            chosen = [e for e in logged if e[1] == model and e[3] == phase and e[2] == version]
            ev = np.array([e[4] @ e[6][:, e[5]] for e in chosen])
            var = np.array([e[4] @ e[6][:, e[5]] ** 2 for e in chosen]) - ev**2
            known = np.array([e[0] in labels for e in chosen])
            realized = sum(e[6][labels[e[0]], e[5]] for e in chosen if e[0] in labels)
            window = next(
                w
                for w in report["windows"]
                if round(datetime.fromisoformat(w["from"]).timestamp() - start) == phase
            )
            got = next(v for v in window["versions"] if v["version"] == version)
            assert got["decisions"] == len(chosen)
            assert got["with_outcome"] == known.sum()
            assert abs(got["realized_value"] - realized) < 0.005
            assert got["expected_value"] == pytest.approx(ev[known].sum(), rel=1e-9, abs=1e-9)
            assert got["estimated_value_without_outcome"] == pytest.approx(
                ev[~known].sum(), rel=1e-9, abs=1e-9
            )
            se = np.sqrt(np.maximum(var[known], 0).sum())
            assert got["gap_standard_error"] == pytest.approx(se, rel=1e-6, abs=1e-9)
            assert got["alert"] == bool(realized - ev[known].sum() < -3 * se)


def test_outcome_refusals_store_nothing(served):
    client, _root = served
    answer = client.post("/predict", json={"instances": [[0.0] * len(FEATURES)], "ids": ["r-1"]})
    assert answer.status_code == 200
    client.app.state.decision_log.flush()
    post = lambda body, **kw: client.post("/outcomes", json=body, **kw)  # noqa: E731
    assert post({"outcomes": [{"id": "r-1", "label": 1}]}).json()["stored"] == 1
    conflict = post({"outcomes": [{"id": "r-1", "label": 0}]})
    assert conflict.status_code == 409 and "'r-1'" in conflict.json()["detail"]
    cases = [
        ({"outcomes": [{"id": "bad id", "label": 1}]}, "body.outcomes[0].id"),
        ({"outcomes": [{"id": "r-1", "label": 2}]}, "body.outcomes[0].label"),
        ({"outcomes": [{"id": "r-1", "label": "yes"}]}, "body.outcomes[0].label"),
        ({"outcomes": [{"id": f"x{i}", "label": 1} for i in range(100_001)]}, "body.outcomes"),
        ({"outcomes": []}, "body.outcomes"),
    ]
    for body, field in cases:
        refused = post(body)
        assert refused.status_code == 422 and field in refused.json()["detail"], refused.text
    replaced = post({"outcomes": [{"id": "r-1", "label": 0}], "replace": True}).json()
    assert replaced["replaced"] == 1
    unknown = client.post(
        "/outcomes", content="id,label\nr-1,0\nnobody,1\n", headers={"Content-Type": "text/csv"}
    ).json()
    assert unknown == {"stored": 0, "replaced": 0, "unchanged": 1, "unknown": ["nobody"]}
    store = client.app.state.decision_log.store
    assert store.outcomes_of(["r-1", "nobody", "x0"]) == {"r-1": 0}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"window": "PT0S"}, "window"),
        ({"window": "soon"}, "window"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        (
            {"window": "PT0.0001S", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
            "window",
        ),
    ],
)
def test_value_refusals_name_the_field(served, params, field):
    client, _root = served
    refused = client.get(f"/models/{BINARY}/value", params=params)
    assert refused.status_code == 422 and refused.json()["detail"].startswith(field), refused.text
