"""Running schemathesis (all phases including stateful, all checks) against the service and
collecting what it found, for the in-process and the end-to-end contract tests.

What is configured, and why:
- ``positive_data_acceptance`` expects 2xx or 422, and the check
  :func:`only_documented_refusals` narrows the 422 to exactly the two refusals the
  document states for a schema-valid body: ``non_finite_score``, and ``out_of_range`` when
  the request asked for refusal. Any other answer to a valid body fails the run, 404
  included (model names are enums of the loaded models).
- :func:`strict_json` fails any 200 JSON body that is not strict JSON (Python's parser
  lets NaN and Infinity through, so the built-in checks would not see them).
- ``map_case`` makes generated *positive* cases obey the rules JSON Schema cannot state
  and the operations' descriptions list: on ``/predict`` and ``/invocations`` a
  per-instance cost list has one value per instance, and on ``/invocations`` the SageMaker
  headers choose a model the body fits (the body's ``model``, or one with the width of its
  CSV or JSON-lines rows); on ``/evaluate`` labels as long as the data, per-instance costs
  as long as the data, query options only with a CSV or empty body, one model for a
  figure, both classes among the labels to reweight to a prevalence, and with a value
  matrix K x K values, rows of K probabilities summing to 1 and labels among the classes;
  in the query, ``value_matrix`` alone (with ``models`` of its classes) and with the rows
  of a multiclass model, tp, fp, tn and fn with a binary model's rows.
  It draws figures of the held-out split only (see the hook). Negative cases are left as
  generated. Posted cost matrices stay in the generated cases.
  On ``/outcomes`` a text/csv body of rows ``id,label`` (the pattern the document states).
  On ``/models/{name}/value``, ``from`` before ``to`` and no ``window`` (the whole span;
  a window cutting it into more than 10,000 is a documented 422).
- :func:`scored_model` records which model answered each 200 JSON prediction, and what
  data and kind of matrix each 200 evaluation valued, so that a test can require that
  every kind of model was scored and valued.
"""

from __future__ import annotations

import collections
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from schemathesis.engine.statistic import Statistic

from costaware.card import MulticlassCard, read_any_card
from costaware.economics import OUTCOMES, CostMatrix, EconomicsError
from service.errors import ServiceError
from service.inference import (
    CUSTOM_ATTRIBUTES_HEADER,
    TARGET_MODEL_HEADER,
    parse_custom_attributes,
    target_model_name,
)
from service.openapi import OUTCOMES_CSV_PATTERN
from service.protocols.v2.tensors import available_outputs

JSONLINES = "application/jsonlines"
REFUSAL_KINDS = {"non_finite_score", "out_of_range"}

# JSON lines bodies are strings, sent as they are (schemathesis has no serializer for it).
schemathesis.serializer.alias(JSONLINES, "text/plain")


def _is_positive(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


def _asked_to_refuse(case: Any) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    header = str((case.headers or {}).get("X-Amzn-SageMaker-Custom-Attributes", ""))
    return body.get("on_out_of_range") == "refuse" or "on_out_of_range=refuse" in header.replace(
        " ", ""
    ).lower().replace(";", ",")


@schemathesis.check
def only_documented_refusals(ctx: Any, response: Any, case: Any) -> None:
    """A schema-valid request gets a 2xx, or one of the two documented 422 refusals."""
    if not _is_positive(case) or response.status_code != 422:
        return
    kind = json.loads(response.content).get("error")
    if kind == "non_finite_score" or (kind == "out_of_range" and _asked_to_refuse(case)):
        return
    raise AssertionError(f"schema-valid request refused with 422 {kind}: {response.text[:300]}")


@schemathesis.check
def strict_json(ctx: Any, response: Any, case: Any) -> None:
    """Every 200 JSON body parses without NaN or Infinity."""
    if response.status_code != 200:
        return
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/json"):
        return

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a 200 JSON body")

    json.loads(response.content, parse_constant=refuse)


# (path, model, cost matrix) of each 200 JSON prediction of the current run (see run()).
_SCORED: collections.Counter = collections.Counter()


@schemathesis.check
def scored_model(ctx: Any, response: Any, case: Any) -> None:
    """Records which model answered each 200 JSON prediction (it checks nothing: the
    tests assert on what it saw, e.g. that the multiclass model was scored)."""
    if response.status_code != 200 or case.path not in ("/predict", "/invocations", "/evaluate"):
        return
    try:
        answer = json.loads(response.content)
    except ValueError:
        return  # CSV, JSON lines or a figure
    if case.path == "/evaluate":
        # (path, source of the data, kind of matrix): e.g. a text/csv body of a multiclass
        # model valued under value_matrix in the query is ("/evaluate", "csv", "multiclass").
        if isinstance(answer, dict) and isinstance(answer.get("cost_matrix"), dict):
            kind = "multiclass" if "classes" in answer["cost_matrix"] else "binary"
            _SCORED[(case.path, answer.get("data"), kind)] += 1
        return
    if isinstance(answer, dict) and isinstance(answer.get("model"), str):
        # cost_matrix: "request" (posted), "card" (multiclass default), absent (threshold)
        _SCORED[(case.path, answer["model"], answer.get("cost_matrix"))] += 1


def config(
    max_examples: int,
    seed: int = 1,
    expected: tuple[str, ...] = ("2xx", "422"),
    headers: dict[str, str] | None = None,
) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": seed,
            "headers": headers or {},
            "generation": {"max-examples": max_examples, "mode": "all"},
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {"expected-statuses": list(expected)},
            },
            "phases": {"enabled": True},
            "suppress-health-check": ["all"],
            "continue-on-failure": True,
        }
    )


@dataclass(frozen=True)
class Served:
    """What the hooks need to know of the served models: each one's features and kind,
    the default model, each binary model's held-out size, and which are calibrated."""

    features: dict[str, tuple[str, ...]]
    multiclass: frozenset[str]
    default: str
    held_out_sizes: dict[str, int]
    value_matrices: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibrated: frozenset[str] = frozenset()
    versions: dict[str, str] = field(default_factory=dict)
    has_ranges: frozenset[str] = frozenset()

    def v2_outputs(self, name: str, valued: bool) -> list[str]:
        """The V2 outputs an answer of model ``name`` holds."""
        return available_outputs(
            name in self.multiclass, name in self.calibrated, name in self.has_ranges, valued
        )

    @classmethod
    def read(cls, folder: Path, default: str = "medical") -> Served:
        cards = {path.name: read_any_card(path) for path in sorted(folder.iterdir())}
        return cls(
            features={name: tuple(card.features) for name, card in cards.items()},
            multiclass=frozenset(n for n, c in cards.items() if isinstance(c, MulticlassCard)),
            default=default,
            held_out_sizes={
                name: len(card.held_out.labels)
                for name, card in cards.items()
                if not isinstance(card, MulticlassCard)
            },
            value_matrices={
                name: {"classes": card.classes, "values": card.value_matrix.values}
                for name, card in cards.items()
                if isinstance(card, MulticlassCard)
            },
            calibrated=frozenset(n for n, c in cards.items() if c.calibrated),
            versions={name: card.version for name, card in cards.items()},
            has_ranges=frozenset(n for n, c in cards.items() if c.feature_ranges is not None),
        )

    def shape(self, name: str) -> tuple[tuple[str, ...], bool]:
        return self.features[name], name in self.multiclass


def install_rules(schema: Any, served: Served) -> None:
    """Make positive cases obey the rules stated in prose (see the module doc)."""

    @schema.hook("map_case")
    def rules(context: Any, case: Any) -> Any:
        if not _is_positive(case):
            return case
        if case.path == "/models/{name}/distribution.png":
            # The stateful phase takes names from GET /models, the multiclass one too; the
            # figure's name parameter lists the binary models only.
            if (case.path_parameters or {}).get("name") in served.multiclass:
                case.path_parameters["name"] = served.default
            return case
        if case.path == "/outcomes" and case.media_type == "text/csv":
            # The CSV body's pattern (rows id,label) is not used to generate text bodies.
            if not isinstance(case.body, str) or not re.match(OUTCOMES_CSV_PATTERN, case.body):
                case.body = "id,label\nnot-logged-1,1\n"
            return case
        if case.path == "/models/{name}/value":
            # The rules the description states: from before to, at most 10,000 windows.
            query = case.query or {}
            if {"from", "to"} <= set(query) and query["from"] >= query["to"]:
                query["from"], query["to"] = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
            query.pop("window", None)
            case.query = query
            return case
        if case.path == "/models/{name}/calibration.png":
            # Likewise: the reliability diagram's name lists the calibrated models only.
            if (case.path_parameters or {}).get("name") not in served.calibrated:
                case.path_parameters["name"] = min(served.calibrated)
            return case
        if case.path.startswith("/v2/models/{name}"):
            _fit_v2(case, served)
            return case
        if case.method.upper() != "POST":
            return case
        if case.path in ("/predict", "/invocations"):
            if case.path == "/invocations":
                _fit_target(case, served)
            body = case.body
            if isinstance(body, dict) and isinstance(body.get("cost_matrix"), dict):
                # Each per-instance list has one value per instance.
                n = len(body.get("instances") or [None])
                _fit_lists(body["cost_matrix"], n)
                _prefer_values(body["cost_matrix"])
            return case
        if case.path != "/evaluate":
            return case
        body = case.body
        if isinstance(body, dict) and "classes" in (body.get("cost_matrix") or {}):
            # Figures are of binary models; query options go with CSV or empty bodies.
            case.query = {}
            _fit_value_matrix(body)
            return case
        query = dict(case.query or {})
        if not isinstance(body, dict) and _fit_multiclass_query(case, query, served):
            return case
        plot = query.get("plot")
        posted = isinstance(body, str) or (
            isinstance(body, dict) and (body.get("instances") or body.get("scores"))
        )
        if plot is not None and posted:
            # Drawing a figure of posted data takes about half a second and cannot be
            # cached; the coverage phase asks for hundreds. Figures of the held-out split
            # (cached) stay in the run; those of posted data have tests in test_evaluate.
            del query["plot"]
            plot = None
        if isinstance(body, str):
            # The labels of generated CSV rows may all be one class, which cannot be
            # reweighted to another prevalence.
            query.pop("prevalence", None)
        if isinstance(body, dict):
            # Query options beside a JSON body override its fields: fold them in, fit the
            # body, and send the options as the fitted body has them.
            options = {key: value for key, value in query.items() if key != "plot"}
            # A binary body: no multiclass matrix or model from the query beside it, and
            # posted scores come without models.
            options.pop("value_matrix", None)
            if body.get("scores") is not None:
                options.pop("models", None)
            if options.get("models"):
                names = options["models"]
                names = [n for n in (names if isinstance(names, list) else [names])]
                options["models"] = [n for n in names if n not in served.multiclass]
                if not options["models"]:
                    del options["models"]
            _fold_options(body, options)
            _fit_body(body, served.held_out_sizes, one_model=plot is not None)
            case.query = _options_of(body, options) | ({"plot": plot} if plot is not None else {})
        else:
            for key in ("tp", "fp", "tn", "fn"):
                query.setdefault(key, 0)
            if query.get("models"):
                # Binary options value binary models; no models left means all of them.
                names = query["models"] if isinstance(query["models"], list) else [query["models"]]
                names = [name for name in names if name not in served.multiclass]
                if names:
                    query["models"] = names
                else:
                    del query["models"]
            _fit_lists(query, None)
            if plot is not None:
                models = query.get("models") or sorted(served.held_out_sizes)
                query["models"] = models[:1] if isinstance(models, list) else [models]
            case.query = query
        return case


# Feature values a generated V2 tensor is clipped to: no graph overflows on them, so a
# positive case is never refused for a non-finite score (a 400 in the V2 protocol, where
# /predict's 422 is a documented refusal).
_V2_CLIP = 1e6


def _fit_v2(case: Any, served: Served) -> None:
    """A V2 path of the model it names: the served version, and for infer a features tensor
    of that model's width (N x F values), the parameters and outputs the model's answer
    takes (see the operation's description); instances are flagged, never refused."""
    params = case.path_parameters or {}
    name = params.get("name")
    if name not in served.features:
        return
    if "version" in params:
        params["version"] = served.versions[name]
    if case.method.upper() != "POST" or not isinstance(case.body, dict):
        return
    # A copy: the coverage phase's cases may share one body (fitted for another model).
    body = case.body = copy.deepcopy(case.body)
    width = len(served.features[name])
    for tensor in body.get("inputs") or []:
        flat: list[Any] = []
        stack = [tensor.get("data")]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(reversed(item))
            else:
                flat.append(item)
        flat = [min(max(value, -_V2_CLIP), _V2_CLIP) for value in flat] or [0]
        n = max(1, len(flat) // width)
        tensor["data"] = (flat * width * n)[: n * width]
        tensor["shape"] = [n, width]
        (tensor.get("parameters") or {}).pop("binary_data_size", None)
    parameters = body.get("parameters")
    multiclass = name in served.multiclass
    costs = {
        key for key in ("cost_tp", "cost_fp", "cost_tn", "cost_fn") if key in (parameters or {})
    }
    valued = multiclass
    if isinstance(parameters, dict):
        if parameters.get("on_out_of_range") == "refuse":
            del parameters["on_out_of_range"]
        if multiclass or len(costs) < 4:
            for key in costs:
                del parameters[key]
        else:
            matrix = {key.removeprefix("cost_"): parameters[key] for key in costs}
            _fit_lists(matrix, None)
            parameters.update({f"cost_{key}": value for key, value in matrix.items()})
            valued = True
        if valued:
            parameters.pop("threshold", None)
        elif parameters.get("margin") is not None:
            parameters["margin"] = min(parameters["margin"], 1)
    available = served.v2_outputs(name, valued)
    outputs = body.get("outputs")
    if isinstance(outputs, list):
        seen: set[str] = set()
        kept = []
        for output in outputs:
            if output.get("name") in available and output["name"] not in seen:
                seen.add(output["name"])
                kept.append(output)
        body["outputs"] = kept or [{"name": available[0]}]


def _fit_multiclass_query(case: Any, query: dict[str, Any], served: Served) -> bool:
    """/evaluate with a text/csv or empty body values multiclass models when the query has
    ``value_matrix`` and the CSV rows (if any) are a multiclass model's: then the query is
    the matrix and models of those classes, nothing else (True). A CSV body of a binary
    width drops ``value_matrix`` (False: the binary rules follow)."""
    body = case.body if isinstance(case.body, str) else None
    width = None
    if body is not None and body.strip():
        width = body.strip().splitlines()[0].count(",")
    fits = [name for name in sorted(served.multiclass) if len(served.features[name]) == width]
    matrix = query.pop("value_matrix", None)
    if (body is not None and not fits) or (body is None and matrix is None):
        return False
    if isinstance(matrix, str):
        try:
            matrix = json.loads(matrix)
        except ValueError:
            matrix = None
    if not isinstance(matrix, dict) or "classes" not in matrix:
        matrix = served.value_matrices[(fits or sorted(served.multiclass))[0]]
    fitted = {"cost_matrix": json.loads(json.dumps(matrix))}
    _fit_value_matrix(fitted)
    classes = list(fitted["cost_matrix"]["classes"])
    same = [name for name, m in served.value_matrices.items() if list(m["classes"]) == classes]
    asked = query.get("models") or []
    asked = [name for name in (asked if isinstance(asked, list) else [asked]) if name in same]
    if body is not None:
        asked = [name for name in asked if name in fits]
    # Query parameters reach map_case serialized: the matrix as JSON text.
    matrix_text = json.dumps(fitted["cost_matrix"])
    case.query = {"value_matrix": matrix_text, **({"models": asked} if asked else {})}
    return True


def _fit_body(body: dict[str, Any], held_out_sizes: dict[str, int], *, one_model: bool) -> None:
    data = body.get("scores") if body.get("scores") is not None else body.get("instances")
    if data is not None:
        labels = body.get("labels") or [0]
        body["labels"] = (labels * len(data))[: len(data)]
        n = len(data)
        if body.get("prevalence") is not None:
            # Reweighting to a prevalence needs both classes in the labels.
            if n < 2:
                body.pop("prevalence")
            else:
                body["labels"][:2] = [0, 1]
    else:
        models = body.get("models") or sorted(held_out_sizes)
        if one_model:
            models = models[:1]
            body["models"] = models
        sizes = {held_out_sizes[name] for name in models}
        n = sizes.pop() if len(sizes) == 1 else None
    if one_model and data is not None and "scores" not in body:
        body["models"] = (body.get("models") or sorted(held_out_sizes))[:1]
    _fit_lists(body.get("cost_matrix") or {}, n)


def _fold_options(body: dict[str, Any], options: dict[str, Any]) -> None:
    """What the service does with query options beside a JSON body: each overrides the
    body's field (tp, fp, tn and fn: the entries of its binary cost matrix)."""
    for key, value in options.items():
        if key == "models":
            names = value if isinstance(value, list) else [value]
            body["models"] = [
                n.strip() for item in names for n in str(item).split(",") if n.strip()
            ]
        elif key == "curve":
            body["curve"] = value if isinstance(value, bool) else str(value).lower() == "true"
        elif key in OUTCOMES:
            body.setdefault("cost_matrix", {})[key] = float(value)
        else:
            body[key] = float(value)  # the query's strings, as FastAPI reads them


def _options_of(body: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The query options with the values the fitted body holds (dropped where it dropped
    them)."""
    out = {}
    for key in options:
        value = body.get("cost_matrix", {}).get(key) if key in OUTCOMES else body.get(key)
        if value is not None:
            out[key] = value
    return out


def _fit_target(case: Any, served: Served) -> None:
    """/invocations: the SageMaker headers choose the model, which OpenAPI cannot tie to
    the body; point them at a model the body fits (its ``model``, or one of its width)."""
    headers = dict(case.headers or {})
    try:
        attributes = parse_custom_attributes(headers.get(CUSTOM_ATTRIBUTES_HEADER))
    except ServiceError:
        # A malformed threshold= or margin= in a free-form header: not this run's subject.
        headers.pop(CUSTOM_ATTRIBUTES_HEADER)
        attributes = parse_custom_attributes(None)
    chosen = target_model_name(headers.get(TARGET_MODEL_HEADER)) or attributes.model
    if chosen not in served.features:
        chosen = None
    body = case.body
    if isinstance(body, dict | list):
        wanted = (body.get("model") if isinstance(body, dict) else None) or served.default
    else:
        lines = [line for line in str(body).splitlines() if line.strip()]
        width = (
            len(json.loads(lines[0])) if case.media_type == JSONLINES else lines[0].count(",") + 1
        )
        current = chosen or served.default
        wanted = next(
            (
                name
                for name in [current, *sorted(served.features)]
                if len(served.features[name]) == width
            ),
            current,
        )
    if served.shape(chosen or served.default) != served.shape(wanted):
        headers[TARGET_MODEL_HEADER] = wanted
        chosen = wanted
    valued = (chosen or served.default) in served.multiclass or (
        isinstance(body, dict) and body.get("cost_matrix") is not None
    )
    if attributes.threshold is not None and valued:
        headers.pop(CUSTOM_ATTRIBUTES_HEADER, None)
    case.headers = headers


def _fit_lists(costs: dict[str, Any], n: int | None) -> None:
    for key, value in list(costs.items()):
        if key in OUTCOMES and isinstance(value, list):
            costs[key] = (value * n)[:n] if n else value[0]
    if set(OUTCOMES) <= set(costs):
        # A matrix must prefer some decision for some truth: nudge v_tn off v_fp.
        def number(value: Any) -> Any:
            return [float(v) for v in value] if isinstance(value, list) else float(value)

        try:
            CostMatrix.from_mapping({key: number(costs[key]) for key in OUTCOMES})
        except (EconomicsError, TypeError, ValueError) as exc:
            if "the same value" in str(exc):
                tn, fp = number(costs["tn"]), number(costs["fp"])
                other = fp[0] if isinstance(fp, list) else fp
                moved = other - 1 if other > 0 else other + 1
                costs["tn"] = [moved, *tn[1:]] if isinstance(tn, list) else moved


def _prefer_values(matrix: dict[str, Any]) -> None:
    """A value matrix must prefer some decision for some truth: nudge one cell."""
    values = matrix.get("values")
    rows = values if isinstance(values, list) and values else []
    if all(isinstance(row, list) and len(row) > 1 and len(set(row)) == 1 for row in rows):
        first = rows[0] if rows else None
        if first:
            first[0] = first[1] - 1 if first[1] > 0 else first[1] + 1


def _fit_value_matrix(body: dict[str, Any]) -> None:
    """A value matrix K x K for its K classes, K probabilities summing to 1 per row of
    scores, and labels among the classes, as many as the data."""
    matrix = body["cost_matrix"]
    classes = matrix["classes"]
    k = len(classes)
    cells = [value for row in matrix["values"] for value in row] or [0]
    matrix["values"] = [[cells[(i * k + j) % len(cells)] for j in range(k)] for i in range(k)]
    _prefer_values(matrix)
    if body.get("scores") is not None:
        rows = []
        for row in body["scores"]:
            row = (row * k)[:k]
            total = sum(row)
            rows.append([value / total for value in row] if total > 0 else [1 / k] * k)
        body["scores"] = rows
    data = body.get("scores") if body.get("scores") is not None else body.get("instances")
    if data is not None:
        n = len(data)
        labels = (body["labels"] * n)[:n]
        body["labels"] = [
            label
            if (isinstance(label, str) and label in classes)
            or (not isinstance(label, str) and 0 <= label < k)
            else classes[index % k]
            for index, label in enumerate(labels)
        ]


@dataclass
class Outcome:
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)
    # (path, model, "request" | "card" | None) -> 200 JSON predictions: the model that
    # answered and the cost matrix it decided by (posted, the card's, or none: threshold)
    scored: collections.Counter = field(default_factory=collections.Counter)

    @property
    def server_errors(self) -> int:
        return sum(count for (_, _, status), count in self.statuses.items() if status >= 500)


def run(schema: Any) -> Outcome:
    """Run every phase on ``schema``; what was generated, answered and found."""
    statistic = Statistic()
    outcome = Outcome()
    _SCORED.clear()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            statistic.on_scenario_finished(event.recorder)
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    path = interaction.request.uri.split("?")[0].split("://", 1)[-1]
                    path = "/" + path.split("/", 1)[-1]
                    key = (interaction.request.method, path, interaction.response.status_code)
                    outcome.statuses[key] += 1
        elif isinstance(event, events.PhaseFinished):
            outcome.phases[event.phase.name.value] = event.status.value
        elif isinstance(event, events.NonFatalError | events.FatalError):
            outcome.errors.append(str(event))
    outcome.cases = statistic.total_cases
    outcome.scored = collections.Counter(_SCORED)
    for label, groups in statistic.failures.items():
        for group in groups.values():
            for failure in group.failures:
                outcome.failures.append(
                    f"{label}: {failure.title}: {(failure.message or '')[:300]}\n"
                    f"    {(group.code_sample or '')[:500]}"
                )
    return outcome
