"""The recorded corpus: requests to the service over the shipped models (``models/``), one
per endpoint, answer format and refusal the suite exercises (issue 24's golden file).

Every request is built here from constants, the shipped cards' feature ranges (fixed seeds)
and the request files under ``tests/service/data``; nothing depends on the clock or on
the order of the requests, except what ``record.normalise`` names. Names are unique: they
are the keys of ``answers.jsonl`` and of the test's parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "models"
DATA = ROOT / "tests" / "service" / "data"

JSON = "application/json"
CSV = "text/csv"
JSONL = "application/jsonlines"
PNG = "image/png"
BOM = b"\xef\xbb\xbf"
TARGET = "X-Amzn-SageMaker-Target-Model"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"

BINARY = ("builtin", "custom-5to1", "medical", "tuned")
MULTICLASS = ("wine",)
QALY = {"tp": -35280.0, "fp": -1287.67, "tn": 0.0, "fn": -252000.0}
QALY_QUERY = "tp=-35280&fp=-1287.67&tn=0&fn=-252000"
WINE_CLASSES = ["class_0", "class_1", "class_2"]
# Not the card's matrix, so that a fall back to the card's would show.
WINE_MATRIX = {"classes": WINE_CLASSES, "values": [[90, -25, -40], [-250, 55, -5], [-320, -70, 65]]}


@dataclass(frozen=True)
class Request:
    name: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    follow_redirects: bool = field(default=False)


def _card(name: str) -> dict:
    return json.loads((SHIPPED / name / "model-card.json").read_text())


def rows(model: str, n: int, seed: int) -> list[list[float]]:
    """``n`` rows inside the card's central training range (p0.5 .. p99.5), 3 decimals."""
    ranges = _card(model)["feature_ranges"]
    low = np.array([r["p0_5"] for r in ranges])
    high = np.array([r["p99_5"] for r in ranges])
    draws = np.random.default_rng(seed).uniform(low, high, size=(n, len(ranges)))
    return draws.round(3).tolist()


def beyond(model: str, row: list[float]) -> list[float]:
    """``row`` with its first feature twice the training maximum (out of range)."""
    top = _card(model)["feature_ranges"][0]["max"]
    return [round(2 * top, 3), *row[1:]]


def features(model: str) -> list[str]:
    return list(_card(model)["features"])


def csv_text(matrix: list[list[float]], labels: list[object] | None = None) -> bytes:
    lines = []
    for i, row in enumerate(matrix):
        cells = [repr(v) for v in row]
        if labels is not None:
            cells = [str(labels[i]), *cells]
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def jsonl_text(matrix: list[list[float]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in matrix).encode()


def _json(payload: object) -> bytes:
    return json.dumps(payload).encode()


class _Corpus:
    def __init__(self) -> None:
        self.items: list[Request] = []

    def add(self, name: str, method: str, path: str, body: bytes = b"", **headers: str) -> None:
        pairs = tuple((k.replace("_", "-"), v) for k, v in headers.items())
        self.items.append(Request(name, method, path, pairs, body))

    def raw(self, name: str, method: str, path: str, body: bytes, headers: dict) -> None:
        self.items.append(Request(name, method, path, tuple(headers.items()), body))

    def post_json(self, name: str, path: str, payload: object, **headers: str) -> None:
        self.add(name, "POST", path, _json(payload), content_type=JSON, **headers)


def _meta(c: _Corpus) -> None:
    for path in (
        "/ping",
        "/execution-parameters",
        "/models",
        "/health/live",
        "/health/ready",
        "/openapi.json",
        "/explorer",
        "/",
        "/?tp=1&model=medical",
        "/docs",
        "/nowhere",
        "/metrics",
    ):
        c.add(f"GET {path}", "GET", path)
    c.add("GET /predict (method not allowed)", "GET", "/predict")
    c.add("GET /invocations (method not allowed)", "GET", "/invocations")
    for asset in sorted((ROOT / "service" / "static" / "explorer").glob("*")):
        if asset.is_file() and asset.suffix in {".js", ".css", ".html"}:
            c.add(f"GET explorer asset {asset.name}", "GET", f"/explorer/assets/{asset.name}")
    for name in (*BINARY, *MULTICLASS, "nope"):
        c.add(f"GET /models/{name}", "GET", f"/models/{name}")
        c.add(f"GET calibration.png {name}", "GET", f"/models/{name}/calibration.png")
        c.add(f"GET distribution.png {name}", "GET", f"/models/{name}/distribution.png")
    c.add(
        "GET distribution.png medical threshold margin",
        "GET",
        "/models/medical/distribution.png?threshold=0.3&margin=0.05",
    )
    c.add(
        "GET distribution.png medical bad threshold",
        "GET",
        "/models/medical/distribution.png?threshold=1.5",
    )
    c.add(
        "GET distribution.png builtin margin", "GET", "/models/builtin/distribution.png?margin=0.2"
    )
    c.add("POST /models/medical/load (no admin key)", "POST", "/models/medical/load")
    c.add("POST /models/medical/unload (no admin key)", "POST", "/models/medical/unload")


def _predict(c: _Corpus) -> None:
    for model in (*BINARY, *MULTICLASS):
        sample = rows(model, 6, seed=hash_seed(model))
        names = features(model)
        c.post_json(f"predict {model} arrays", "/predict", {"model": model, "instances": sample})
        c.post_json(
            f"predict {model} objects",
            "/predict",
            {"model": model, "instances": [dict(zip(names, r, strict=True)) for r in sample[:3]]},
        )
        c.post_json(
            f"predict {model} objects shuffled keys",
            "/predict",
            {
                "model": model,
                "instances": [dict(reversed(list(zip(names, sample[0], strict=True))))],
            },
        )
        c.post_json(
            f"predict {model} out of range flagged",
            "/predict",
            {"model": model, "instances": [sample[0], beyond(model, sample[1])]},
        )
        c.post_json(
            f"predict {model} out of range refused",
            "/predict",
            {"model": model, "instances": [beyond(model, sample[1])], "on_out_of_range": "refuse"},
        )
        c.post_json(
            f"predict {model} in range refuse mode",
            "/predict",
            {"model": model, "instances": sample[:2], "on_out_of_range": "refuse"},
        )
        c.post_json(
            f"predict {model} wrong width",
            "/predict",
            {"model": model, "instances": [sample[0][:-1]]},
        )
        c.post_json(
            f"predict {model} missing feature",
            "/predict",
            {"model": model, "instances": [dict(list(zip(names, sample[0], strict=True))[1:])]},
        )
        c.post_json(
            f"predict {model} unknown feature",
            "/predict",
            {
                "model": model,
                "instances": [{**dict(zip(names, sample[0], strict=True)), "extra": 1.0}],
            },
        )
        c.raw(
            f"predict {model} NaN instance",
            "POST",
            "/predict",
            f'{{"model": "{model}", "instances": [[NaN{", 1.0" * (len(names) - 1)}]]}}'.encode(),
            {"content-type": JSON},
        )
    binary = rows("medical", 8, seed=11)
    c.post_json("predict default model", "/predict", {"instances": binary[:4]})
    for threshold, margin in ((0.3, 0.05), (0.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
        c.post_json(
            f"predict medical threshold {threshold} margin {margin}",
            "/predict",
            {"model": "medical", "instances": binary, "threshold": threshold, "margin": margin},
        )
    for model in BINARY:
        c.post_json(
            f"predict {model} cost matrix",
            "/predict",
            {"model": model, "instances": binary, "cost_matrix": QALY},
        )
    c.post_json(
        "predict medical cost matrix margin",
        "/predict",
        {"model": "medical", "instances": binary, "cost_matrix": QALY, "margin": 500.0},
    )
    c.post_json(
        "predict medical cost matrix per instance",
        "/predict",
        {
            "model": "medical",
            "instances": binary[:3],
            "cost_matrix": {**QALY, "fn": [-252000.0, -1000.0, -50.0]},
        },
    )
    c.post_json(
        "predict medical cost matrix per instance wrong length",
        "/predict",
        {"model": "medical", "instances": binary[:3], "cost_matrix": {**QALY, "fn": [-1.0, -2.0]}},
    )
    c.post_json(
        "predict medical cost matrix all zero",
        "/predict",
        {"model": "medical", "instances": binary[:2], "cost_matrix": dict.fromkeys(QALY, 0.0)},
    )
    c.post_json(
        "predict medical cost matrix treat everyone",
        "/predict",
        {"model": "medical", "instances": binary[:2], "cost_matrix": {**QALY, "fp": 0.0}},
    )
    wine = rows("wine", 6, seed=5)
    c.post_json("predict wine card matrix", "/predict", {"model": "wine", "instances": wine})
    c.post_json(
        "predict wine value matrix",
        "/predict",
        {"model": "wine", "instances": wine, "cost_matrix": WINE_MATRIX},
    )
    c.post_json(
        "predict wine value matrix margin",
        "/predict",
        {"model": "wine", "instances": wine, "cost_matrix": WINE_MATRIX, "margin": 40.0},
    )
    c.post_json(
        "predict wine equal values",
        "/predict",
        {
            "model": "wine",
            "instances": wine[:2],
            "cost_matrix": {"classes": WINE_CLASSES, "values": [[1.0] * 3] * 3},
        },
    )
    # The suite's request files (tests/service/data): fixture-shaped rows of 30 values.
    for path in sorted(DATA.glob("*.json")):
        if path.name.startswith(("evaluate_", "valued_")):
            continue
        c.raw(
            f"predict file {path.name}",
            "POST",
            "/predict",
            path.read_bytes(),
            {"content-type": JSON},
        )
    for i, case in enumerate(json.loads((DATA / "valued_bad_requests.json").read_text())):
        c.post_json(f"valued bad request {i} {case['field']}", case["path"], case["body"])
    # Refusals of the body and the media types.
    c.raw(
        "predict malformed JSON",
        "POST",
        "/predict",
        b'{"instances": [[1, 2,',
        {"content-type": JSON},
    )
    c.raw("predict empty body", "POST", "/predict", b"", {"content-type": JSON})
    c.raw("predict JSON array body", "POST", "/predict", b"[[1, 2]]", {"content-type": JSON})
    c.raw("predict deep nesting", "POST", "/predict", b"[" * 10_000, {"content-type": JSON})
    c.post_json("predict no instances", "/predict", {"instances": []})
    c.post_json("predict instances not a list", "/predict", {"instances": "many"})
    c.post_json("predict unknown model", "/predict", {"model": "nope", "instances": binary[:1]})
    c.post_json("predict bad model name", "/predict", {"model": "../etc", "instances": binary[:1]})
    c.post_json("predict threshold 1.5", "/predict", {"instances": binary[:1], "threshold": 1.5})
    c.post_json("predict margin -0.1", "/predict", {"instances": binary[:1], "margin": -0.1})
    c.post_json("predict threshold string", "/predict", {"instances": binary[:1], "threshold": "x"})
    c.post_json(
        "predict bad on_out_of_range",
        "/predict",
        {"instances": binary[:1], "on_out_of_range": "drop"},
    )
    c.post_json("predict unknown field", "/predict", {"instances": binary[:1], "colour": "red"})
    c.post_json("predict string cell", "/predict", {"instances": [["a", *binary[0][1:]]]})
    c.post_json("predict bool cell", "/predict", {"instances": [[True, *binary[0][1:]]]})
    c.post_json("predict huge cell", "/predict", {"instances": [[1e39, *binary[0][1:]]]})
    c.post_json("predict null cell", "/predict", {"instances": [[None, *binary[0][1:]]]})
    c.raw(
        "predict Infinity cell",
        "POST",
        "/predict",
        ('{"instances": [[Infinity' + ", 1.0" * 29 + "]]}").encode(),
        {"content-type": JSON},
    )
    good = _json({"instances": binary[:1]})
    c.raw("predict BOM", "POST", "/predict", BOM + good, {"content-type": JSON})
    c.raw("predict text/plain", "POST", "/predict", good, {"content-type": "text/plain"})
    c.raw("predict no content-type", "POST", "/predict", good, {})
    c.raw(
        "predict CSV content-type", "POST", "/predict", csv_text(binary[:1]), {"content-type": CSV}
    )
    c.raw(
        "predict accept text/csv", "POST", "/predict", good, {"content-type": JSON, "accept": CSV}
    )
    c.raw("predict accept any", "POST", "/predict", good, {"content-type": JSON, "accept": "*/*"})
    c.raw(
        "predict charset",
        "POST",
        "/predict",
        good,
        {"content-type": "application/json; charset=utf-8"},
    )
    c.raw(
        "predict latin-1 bytes",
        "POST",
        "/predict",
        b'{"instances": "\xe9"}',
        {"content-type": JSON},
    )


def _invocations(c: _Corpus) -> None:
    binary = rows("medical", 5, seed=21)
    wine = rows("wine", 4, seed=22)
    for accept in (CSV, JSON, JSONL):
        c.raw(
            f"invocations CSV -> {accept}",
            "POST",
            "/invocations",
            csv_text(binary),
            {"content-type": CSV, "accept": accept},
        )
        c.raw(
            f"invocations JSONL -> {accept}",
            "POST",
            "/invocations",
            jsonl_text(binary),
            {"content-type": JSONL, "accept": accept},
        )
        c.raw(
            f"invocations JSON -> {accept}",
            "POST",
            "/invocations",
            _json({"instances": binary}),
            {"content-type": JSON, "accept": accept},
        )
        c.raw(
            f"invocations wine CSV -> {accept}",
            "POST",
            "/invocations",
            csv_text(wine),
            {"content-type": CSV, "accept": accept, TARGET: "wine"},
        )
        c.raw(
            f"invocations JSON cost matrix -> {accept}",
            "POST",
            "/invocations",
            _json({"instances": binary, "cost_matrix": QALY}),
            {"content-type": JSON, "accept": accept},
        )
        c.raw(
            f"invocations wine JSON value matrix -> {accept}",
            "POST",
            "/invocations",
            _json({"model": "wine", "instances": wine, "cost_matrix": WINE_MATRIX}),
            {"content-type": JSON, "accept": accept},
        )
    c.raw("invocations no accept", "POST", "/invocations", csv_text(binary), {"content-type": CSV})
    c.raw(
        "invocations accept any",
        "POST",
        "/invocations",
        csv_text(binary),
        {"content-type": CSV, "accept": "*/*"},
    )
    c.raw(
        "invocations accept list",
        "POST",
        "/invocations",
        csv_text(binary),
        {"content-type": CSV, "accept": "text/html;q=1, application/jsonlines;q=0.5"},
    )
    for alias in ("application/x-jsonlines", "application/jsonl"):
        c.raw(
            f"invocations {alias}",
            "POST",
            "/invocations",
            jsonl_text(binary),
            {"content-type": alias, "accept": alias},
        )
    for target in (
        *BINARY,
        "models/custom-5to1.tar.gz",
        "prefix/tuned.tgz",
        "builtin/",
        "nope",
        " ",
    ):
        c.raw(
            f"invocations target {target!r}",
            "POST",
            "/invocations",
            csv_text(binary),
            {"content-type": CSV, "accept": JSON, TARGET: target},
        )
    for attributes in (
        "threshold=0.2",
        "margin=0.3",
        "threshold=0.2;margin=0.01",
        "model=builtin",
        "model=wine",
        "threshold=2",
        "margin=x",
        "on_out_of_range=refuse",
        "on_out_of_range=drop",
        "other=1, threshold=0.9",
    ):
        c.raw(
            f"invocations attributes {attributes}",
            "POST",
            "/invocations",
            csv_text([binary[0], beyond("medical", binary[1])]),
            {"content-type": CSV, "accept": JSON, ATTRIBUTES: attributes},
        )
    c.raw(
        "invocations target beats attributes",
        "POST",
        "/invocations",
        csv_text(binary),
        {"content-type": CSV, "accept": JSON, TARGET: "tuned", ATTRIBUTES: "model=builtin"},
    )
    c.raw(
        "invocations wine wrong width",
        "POST",
        "/invocations",
        csv_text(binary[:1]),
        {"content-type": CSV, TARGET: "wine"},
    )
    for path in sorted(DATA.glob("*.csv")) + sorted(DATA.glob("*.jsonl")):
        kind = CSV if path.suffix == ".csv" else JSONL
        c.raw(
            f"invocations file {path.name}",
            "POST",
            "/invocations",
            path.read_bytes(),
            {"content-type": kind, "accept": kind},
        )
    c.raw(
        "invocations CSV BOM", "POST", "/invocations", BOM + csv_text(binary), {"content-type": CSV}
    )
    c.raw(
        "invocations JSONL BOM",
        "POST",
        "/invocations",
        BOM + jsonl_text(binary),
        {"content-type": JSONL},
    )
    c.raw(
        "invocations CSV header row",
        "POST",
        "/invocations",
        (",".join(features("medical")) + "\n").encode() + csv_text(binary),
        {"content-type": CSV},
    )
    c.raw(
        "invocations CSV CRLF",
        "POST",
        "/invocations",
        csv_text(binary).replace(b"\n", b"\r\n"),
        {"content-type": CSV},
    )
    c.raw(
        "invocations CSV blank line",
        "POST",
        "/invocations",
        csv_text(binary[:1]) + b"\n" + csv_text(binary[1:2]),
        {"content-type": CSV},
    )
    c.raw(
        "invocations CSV nan",
        "POST",
        "/invocations",
        b"nan" + csv_text(binary[:1])[len(repr(binary[0][0])) :],
        {"content-type": CSV},
    )
    c.raw(
        "invocations text/plain",
        "POST",
        "/invocations",
        csv_text(binary),
        {"content-type": "text/plain"},
    )
    c.raw(
        "invocations accept image/png",
        "POST",
        "/invocations",
        csv_text(binary),
        {"content-type": CSV, "accept": PNG},
    )
    c.raw("invocations empty CSV", "POST", "/invocations", b"", {"content-type": CSV})
    c.raw(
        "invocations malformed JSON",
        "POST",
        "/invocations",
        b'{"instances": ',
        {"content-type": JSON},
    )
    c.raw(
        "invocations JSONL not arrays",
        "POST",
        "/invocations",
        b'{"a": 1}\n',
        {"content-type": JSONL},
    )


def _evaluate(c: _Corpus) -> None:
    for query in (
        QALY_QUERY,
        f"{QALY_QUERY}&models=medical",
        f"{QALY_QUERY}&models=medical,builtin",
        f"{QALY_QUERY}&models=medical&models=tuned",
        f"{QALY_QUERY}&threshold=0.3&margin=0.05",
        f"{QALY_QUERY}&prevalence=0.02",
        f"{QALY_QUERY}&prevalence=0.02&curve=true",
        f"{QALY_QUERY}&curve=true&models=tuned",
        "tp=1&fp=0&tn=0&fn=1",
        "tp=0&fp=0&tn=0&fn=0",
        "tp=1&fp=-1&tn=1",
        "tp=x&fp=0&tn=0&fn=0",
        f"{QALY_QUERY}&models=nope",
        f"{QALY_QUERY}&threshold=2",
        f"{QALY_QUERY}&prevalence=0",
        f"{QALY_QUERY}&prevalence=1",
        f"{QALY_QUERY}&models=wine",
        "",
    ):
        c.add(f"evaluate query {query!r}", "POST", f"/evaluate?{query}" if query else "/evaluate")
    for plot in ("distribution", "value"):
        for model in (*BINARY, "wine"):
            c.add(
                f"evaluate PNG {plot} {model}",
                "POST",
                f"/evaluate?{QALY_QUERY}&plot={plot}&models={model}",
                accept=PNG,
            )
        c.add(
            f"evaluate PNG {plot} every model",
            "POST",
            f"/evaluate?{QALY_QUERY}&plot={plot}",
            accept=PNG,
        )
        c.add(
            f"evaluate PNG {plot} prevalence",
            "POST",
            f"/evaluate?{QALY_QUERY}&plot={plot}&models=medical&prevalence=0.01",
            accept=PNG,
        )
    c.add("evaluate PNG no plot", "POST", f"/evaluate?{QALY_QUERY}&models=medical", accept=PNG)
    c.add(
        "evaluate bad plot", "POST", f"/evaluate?{QALY_QUERY}&plot=pie&models=medical", accept=PNG
    )
    c.add("evaluate accept text/csv", "POST", f"/evaluate?{QALY_QUERY}", accept=CSV)
    c.post_json(
        "evaluate reference JSON",
        "/evaluate",
        json.loads((DATA / "evaluate_reference.json").read_text()),
    )
    scores = json.loads((DATA / "evaluate_scores.json").read_text())
    c.post_json("evaluate scores JSON", "/evaluate", scores)
    c.post_json("evaluate scores JSON curve", "/evaluate", {**scores, "curve": True})
    c.post_json("evaluate scores JSON prevalence", "/evaluate", {**scores, "prevalence": 0.1})
    c.add(
        "evaluate scores JSON query overrides",
        "POST",
        "/evaluate?threshold=0.9&curve=true",
        _json(scores),
        content_type=JSON,
    )
    c.post_json(
        "evaluate scores per-instance costs",
        "/evaluate",
        {**scores, "cost_matrix": {**QALY, "fn": [-252000.0, -1.0, -2.0, -3.0, -4.0]}},
    )
    # Ties: scores on the threshold (labelled positive) and exactly one margin away (not
    # close: |score - threshold| < margin); 0.25 and 0.75 are exact in binary floats.
    ties = {"scores": [0.5, 0.25, 0.75, 0.0, 1.0, 0.5], "labels": [1, 0, 1, 0, 1, 0]}
    for threshold, margin in ((0.5, 0.25), (0.0, 0.0), (1.0, 0.5), (0.25, 0.5)):
        c.post_json(
            f"evaluate ties threshold {threshold} margin {margin}",
            "/evaluate",
            {"cost_matrix": QALY, **ties, "threshold": threshold, "margin": margin, "curve": True},
        )
    c.post_json(
        "evaluate ties zero matrix",
        "/evaluate",
        {"cost_matrix": dict.fromkeys(QALY, 0.0), **ties, "curve": True, "prevalence": 0.5},
    )
    c.post_json("evaluate scores labels mismatch", "/evaluate", {**scores, "labels": [1, 0]})
    c.post_json(
        "evaluate scores out of [0,1]", "/evaluate", {**scores, "scores": [1.5, 0, 0, 0, 0]}
    )
    c.post_json(
        "evaluate one class prevalence",
        "/evaluate",
        {**scores, "labels": [1] * 5, "prevalence": 0.1},
    )
    binary = rows("medical", 12, seed=31)
    labels = [i % 2 for i in range(12)]
    c.post_json(
        "evaluate instances JSON",
        "/evaluate",
        {"cost_matrix": QALY, "instances": binary, "labels": labels},
    )
    c.post_json(
        "evaluate instances JSON one model threshold",
        "/evaluate",
        {
            "cost_matrix": QALY,
            "instances": binary,
            "labels": labels,
            "models": ["tuned"],
            "threshold": 0.2,
            "margin": 0.02,
        },
    )
    c.post_json(
        "evaluate instances JSON out of range",
        "/evaluate",
        {
            "cost_matrix": QALY,
            "instances": [beyond("medical", binary[0]), *binary[1:]],
            "labels": labels,
        },
    )
    c.post_json(
        "evaluate instances wrong width",
        "/evaluate",
        {"cost_matrix": QALY, "instances": [r[:-1] for r in binary], "labels": labels},
    )
    c.post_json("evaluate held-out JSON", "/evaluate", {"cost_matrix": QALY})
    c.post_json(
        "evaluate held-out JSON curve",
        "/evaluate",
        {"cost_matrix": QALY, "curve": True, "models": ["medical"]},
    )
    csv = csv_text(binary, labels)
    for query in (
        QALY_QUERY,
        f"{QALY_QUERY}&models=builtin&threshold=0.4",
        f"{QALY_QUERY}&prevalence=0.05&curve=true",
        "tp=1&fp=0&tn=0",
    ):
        c.add(f"evaluate CSV {query!r}", "POST", f"/evaluate?{query}", csv, content_type=CSV)
    c.add(
        "evaluate CSV PNG value",
        "POST",
        f"/evaluate?{QALY_QUERY}&models=medical&plot=value",
        csv,
        content_type=CSV,
        accept=PNG,
    )
    c.add(
        "evaluate CSV PNG distribution",
        "POST",
        f"/evaluate?{QALY_QUERY}&models=medical&plot=distribution",
        csv,
        content_type=CSV,
        accept=PNG,
    )
    c.add("evaluate CSV BOM", "POST", f"/evaluate?{QALY_QUERY}", BOM + csv, content_type=CSV)
    c.add(
        "evaluate CSV bad label",
        "POST",
        f"/evaluate?{QALY_QUERY}",
        csv_text(binary[:2], [2, 0]),
        content_type=CSV,
    )
    c.add(
        "evaluate CSV ragged", "POST", f"/evaluate?{QALY_QUERY}", csv + b"1,2\n", content_type=CSV
    )
    c.add("evaluate CSV without query matrix", "POST", "/evaluate", csv, content_type=CSV)
    c.add("evaluate text/plain", "POST", "/evaluate", b"x", content_type="text/plain")
    c.add("evaluate malformed JSON", "POST", "/evaluate", b'{"cost_matrix": ', content_type=JSON)
    c.add(
        "evaluate JSON BOM",
        "POST",
        "/evaluate",
        BOM + _json({"cost_matrix": QALY}),
        content_type=JSON,
    )
    for i, case in enumerate(json.loads((DATA / "evaluate_bad_requests.json").read_text())):
        c.post_json(f"evaluate bad request {i} {case['name']}", "/evaluate", case["body"])
    for i, case in enumerate(json.loads((DATA / "valued_nan_evaluate.json").read_text())):
        c.add(
            f"evaluate NaN {i} {case['field']}",
            "POST",
            "/evaluate",
            case["raw"].encode(),
            content_type=JSON,
        )
    # Multiclass.
    wine = rows("wine", 9, seed=41)
    wine_labels = [i % 3 for i in range(9)]
    vm = json.dumps(WINE_MATRIX)
    c.post_json("evaluate wine held-out", "/evaluate", {"cost_matrix": WINE_MATRIX})
    c.post_json(
        "evaluate wine held-out models",
        "/evaluate",
        {"cost_matrix": WINE_MATRIX, "models": ["wine"], "margin": 30.0},
    )
    c.post_json(
        "evaluate wine instances",
        "/evaluate",
        {"cost_matrix": WINE_MATRIX, "instances": wine, "labels": wine_labels},
    )
    c.post_json(
        "evaluate wine instances class-name labels",
        "/evaluate",
        {
            "cost_matrix": WINE_MATRIX,
            "instances": wine,
            "labels": [WINE_CLASSES[y] for y in wine_labels],
        },
    )
    probabilities = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]]
    c.post_json(
        "evaluate wine scores",
        "/evaluate",
        {"cost_matrix": WINE_MATRIX, "scores": probabilities, "labels": [0, 1, 2, 0]},
    )
    c.post_json(
        "evaluate wine scores not summing to 1",
        "/evaluate",
        {"cost_matrix": WINE_MATRIX, "scores": [[0.7, 0.7, 0.1]], "labels": [0]},
    )
    c.post_json(
        "evaluate wine prevalence", "/evaluate", {"cost_matrix": WINE_MATRIX, "prevalence": 0.1}
    )
    c.post_json("evaluate wine curve", "/evaluate", {"cost_matrix": WINE_MATRIX, "curve": True})
    c.post_json(
        "evaluate wine wrong classes",
        "/evaluate",
        {"cost_matrix": {"classes": ["a", "b", "c"], "values": WINE_MATRIX["values"]}},
    )
    c.post_json(
        "evaluate wine 2x2 matrix",
        "/evaluate",
        {"cost_matrix": {"classes": WINE_CLASSES[:2], "values": [[1, 0], [0, 1]]}},
    )
    c.post_json(
        "evaluate binary matrix on wine", "/evaluate", {"cost_matrix": QALY, "models": ["wine"]}
    )
    c.post_json(
        "evaluate value matrix on medical",
        "/evaluate",
        {"cost_matrix": WINE_MATRIX, "models": ["medical"]},
    )
    q = urlencode({"value_matrix": vm})
    c.add("evaluate wine query held-out", "POST", f"/evaluate?{q}")
    c.add(
        "evaluate wine query CSV",
        "POST",
        f"/evaluate?{q}",
        csv_text(wine, wine_labels),
        content_type=CSV,
    )
    c.add(
        "evaluate wine query CSV class names",
        "POST",
        f"/evaluate?{q}&models=wine",
        csv_text(wine, [WINE_CLASSES[y] for y in wine_labels]),
        content_type=CSV,
    )
    c.add(
        "evaluate wine query CSV bad label",
        "POST",
        f"/evaluate?{q}",
        csv_text(wine[:1], ["class_9"]),
        content_type=CSV,
    )
    c.add("evaluate wine query bad JSON", "POST", "/evaluate?value_matrix=%7Bnope")
    c.add("evaluate wine query and tp", "POST", f"/evaluate?{q}&tp=1")
    c.add("evaluate wine query PNG", "POST", f"/evaluate?{q}&plot=value", accept=PNG)
    c.add(
        "evaluate wine query with JSON body",
        "POST",
        f"/evaluate?{q}",
        _json({"cost_matrix": WINE_MATRIX}),
        content_type=JSON,
    )


def hash_seed(name: str) -> int:
    """A fixed seed per model name (Python's hash() is salted per process)."""
    return sum(name.encode()) % 1000


def build() -> list[Request]:
    corpus = _Corpus()
    _meta(corpus)
    _predict(corpus)
    _invocations(corpus)
    _evaluate(corpus)
    names = [r.name for r in corpus.items]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"corpus names repeat: {sorted(duplicated)}")
    return corpus.items
