"""What ``POST /outcomes`` stores: outcomes joined to logged decisions by prediction id.

Idempotent: the same (id, label) again changes nothing. A different label for an id that
has one is refused (ConflictError naming the id) unless ``replace``; nothing of a refused
request is stored. Ids not in the log are listed in the answer and never stored. Labels
are checked against the classes of the model that made the decision.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from service.decisionlog.ids import check_id
from service.decisionlog.store import DecisionStore
from service.errors import ConflictError, InvalidInputError

MAX_OUTCOMES = 100_000
BINARY_CLASSES = ("0", "1")


@dataclass(frozen=True)
class Posted:
    id: str
    label: Any
    field: str  # how errors name this outcome: outcomes[3] or body, row 4


def parse_csv(text: str) -> list[Posted]:
    """``id,label`` rows (Python's csv; an optional ``id,label`` header line)."""
    rows = list(csv.reader(io.StringIO(text)))
    out: list[Posted] = []
    for number, row in enumerate(rows, start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if number == 1 and [cell.strip().lower() for cell in row] == ["id", "label"]:
            continue
        if len(row) != 2:
            raise InvalidInputError(
                f"body, row {number}: expected 2 fields id,label, got {len(row)}"
            )
        if len(out) == MAX_OUTCOMES:
            raise InvalidInputError(f"body: more than {MAX_OUTCOMES} outcomes in one request")
        out.append(Posted(row[0].strip(), row[1].strip(), f"body, row {number}"))
    return out


def class_index(label: Any, classes: Sequence[str], field: str) -> int:
    """A label as a class index: a class name, or an index 0..K-1 (as /evaluate takes)."""
    if isinstance(label, str):
        if label in classes:
            return classes.index(label)
        if label.isdigit() and int(label) < len(classes):
            return int(label)
    elif isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(classes):
        return label
    raise InvalidInputError(
        f"{field}.label: {label!r} is not one of the classes {list(classes)} "
        f"nor a class index 0..{len(classes) - 1}"
    )


def store_outcomes(
    store: DecisionStore,
    posted: list[Posted],
    replace: bool,
    classes_of: Callable[[str, int], Sequence[str]],
) -> dict[str, Any]:
    """Check and store ``posted``; the answer's counts and the unknown ids.

    ``classes_of(model, k)``: the class names of the model that logged a decision with
    ``k`` probabilities (its card's, or indices when it is no longer loaded)."""
    if len(posted) > MAX_OUTCOMES:
        raise InvalidInputError(f"outcomes: {len(posted)} outcomes; at most {MAX_OUTCOMES}")
    for item in posted:
        check_id(item.id, f"{item.field}.id")
    logged = store.logged({item.id for item in posted})
    chosen: dict[str, tuple[int, Posted]] = {}
    unknown: list[str] = []
    for item in posted:
        entry = logged.get(item.id)
        if entry is None:
            if item.id not in unknown:
                unknown.append(item.id)
            continue
        label = class_index(item.label, classes_of(entry.model, entry.k), item.field)
        earlier = chosen.get(item.id)
        if earlier is not None and earlier[0] != label:
            raise InvalidInputError(
                f"{item.field}.label: id {item.id!r} is posted twice with different labels"
            )
        chosen[item.id] = (label, item)
    existing = store.outcomes_of(chosen)
    conflicts = [i for i, (label, _) in chosen.items() if i in existing and existing[i] != label]
    if conflicts and not replace:
        label, item = chosen[conflicts[0]]
        raise ConflictError(
            f"{item.field}: id {item.id!r} already has the outcome {existing[item.id]} "
            f"(class index), not {label}; post replace: true to change it"
            + (f" ({len(conflicts)} ids conflict)" if len(conflicts) > 1 else "")
        )
    now = time.time_ns() // 1_000_000
    rows = []
    for i, (label, _item) in chosen.items():
        if i in existing and existing[i] == label:
            continue
        matrix = logged[i].matrix
        realized = None if matrix is None else float(matrix[label][logged[i].decision])
        rows.append({"id": i, "label": label, "realized_value": realized, "time_ms": now})
    store.put_outcomes(rows, replace=bool(conflicts))
    return {
        "stored": len(rows) - len(conflicts),
        "replaced": len(conflicts),
        "unchanged": len(chosen) - len(rows),
        "unknown": unknown,
    }
