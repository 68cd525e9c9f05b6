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
- ``map_case`` makes generated *positive* ``/evaluate`` cases obey the rules JSON Schema
  cannot state and the operation's description lists (labels as long as the data,
  per-instance costs as long as the data, query options only with a CSV or empty body, one
  model for a figure, both classes among the labels to reweight to a prevalence), and
  draws figures of the held-out split only (see the hook). Negative cases are left as
  generated.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from schemathesis.engine.statistic import Statistic

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


def config(max_examples: int, seed: int = 1) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": seed,
            "generation": {"max-examples": max_examples, "mode": "all"},
            "checks": {
                "enabled": True,
                "positive_data_acceptance": {"expected-statuses": ["2xx", "422"]},
            },
            "phases": {"enabled": True},
            "suppress-health-check": ["all"],
            "continue-on-failure": True,
        }
    )


def install_evaluate_rules(schema: Any, held_out_sizes: dict[str, int]) -> None:
    """Make positive /evaluate cases obey the cross-field rules (see the module doc)."""

    @schema.hook("map_case")
    def evaluate_rules(context: Any, case: Any) -> Any:
        if not _is_positive(case) or case.method.upper() != "POST":
            return case
        if case.path in ("/predict", "/invocations") and isinstance(case.body, dict):
            # Decisions by expected value under a posted cost matrix: its shape is stated in
            # prose (binary tp/fp/tn/fn or a multiclass value matrix), not as a schema, so
            # generated valid cases leave it out.
            case.body.pop("cost_matrix", None)
            return case
        if case.path != "/evaluate":
            return case
        query = dict(case.query or {})
        body = case.body
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
            case.query = {"plot": plot} if plot is not None else {}
            _fit_body(body, held_out_sizes, one_model=plot is not None)
        else:
            for key in ("tp", "fp", "tn", "fn"):
                query.setdefault(key, 0)
            if plot is not None:
                models = query.get("models") or sorted(held_out_sizes)
                query["models"] = models[:1] if isinstance(models, list) else [models]
            case.query = query
        return case


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
    costs = body.get("cost_matrix") or {}
    for key, value in list(costs.items()):
        if isinstance(value, list):
            costs[key] = (value * n)[:n] if n else value[0]


@dataclass
class Outcome:
    cases: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(count for (_, _, status), count in self.statuses.items() if status >= 500)


def run(schema: Any) -> Outcome:
    """Run every phase on ``schema``; what was generated, answered and found."""
    statistic = Statistic()
    outcome = Outcome()
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
    for label, groups in statistic.failures.items():
        for group in groups.values():
            for failure in group.failures:
                outcome.failures.append(
                    f"{label}: {failure.title}: {(failure.message or '')[:300]}\n"
                    f"    {(group.code_sample or '')[:500]}"
                )
    return outcome
