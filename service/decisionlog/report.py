"""``GET /models/{name}/value``: the decision log's figures per window and version, from
one SQL aggregate (service.decisionlog.store) and :mod:`costaware.realized`'s rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from costaware.realized import ALERT_STANDARD_ERRORS, window_figures
from service.decisionlog.store import DecisionStore
from service.errors import InvalidInputError

MAX_WINDOWS = 10_000
DEFAULT_SPAN = timedelta(days=1)
_TIME = TypeAdapter(datetime)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_DURATION = TypeAdapter(timedelta)


def parse_time(text: str | None, field: str) -> datetime | None:
    """An ISO 8601 time (UTC when it states no offset), or InvalidInputError naming it."""
    if text is None:
        return None
    try:
        if not _ISO_DATE.match(text):
            raise ValueError(text)  # pydantic would take a bare number as a Unix time
        value = _TIME.validate_python(text)
    except (ValidationError, ValueError):
        raise InvalidInputError(
            f"{field}: {text!r} is not an ISO 8601 time (e.g. 2026-12-03T17:00:00Z)"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_duration(text: str | None, field: str) -> timedelta | None:
    if text is None:
        return None
    try:
        value = _DURATION.validate_python(text)
    except ValidationError:
        raise InvalidInputError(
            f"{field}: {text!r} is not an ISO 8601 duration (e.g. PT1H, P1D)"
        ) from None
    if value <= timedelta(0):
        raise InvalidInputError(f"{field}: {text!r} must be longer than 0")
    if value < timedelta(milliseconds=1):
        raise InvalidInputError(f"{field}: {text!r} is shorter than a millisecond")
    return value


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def value_report(
    store: DecisionStore,
    model: str,
    start_text: str | None,
    end_text: str | None,
    window_text: str | None,
) -> dict[str, Any]:
    """The report's JSON: defaults ``to`` now, ``from`` a day before ``to``, one window."""
    end = parse_time(end_text, "to") or datetime.now(UTC)
    start = parse_time(start_text, "from") or end - DEFAULT_SPAN
    if start >= end:
        raise InvalidInputError(f"from: {start.isoformat()} is not before to ({end.isoformat()})")
    window = parse_duration(window_text, "window") or (end - start)
    start_ms, end_ms = _ms(start), _ms(end)
    window_ms = max(1, int(window / timedelta(milliseconds=1)))
    if (end_ms - start_ms + window_ms - 1) // window_ms > MAX_WINDOWS:
        raise InvalidInputError(
            f"window: {window_text!r} cuts from..to into more than {MAX_WINDOWS} windows"
        )
    windows: dict[int, dict[str, Any]] = {}
    for entry in store.aggregates(model, start_ms, end_ms, window_ms):
        w_start = start_ms + entry.window * window_ms
        slot = windows.setdefault(
            entry.window,
            {"from": _iso(w_start), "to": _iso(min(end_ms, w_start + window_ms)), "versions": []},
        )
        figures = window_figures(
            entry.decisions,
            entry.with_outcome,
            entry.realized,
            entry.expected,
            entry.variance,
            entry.estimated,
        )
        slot["versions"].append(
            {"version": entry.version, **figures, "without_matrix": entry.unvalued}
        )
    return {
        "model": model,
        "from": _iso(start_ms),
        "to": _iso(end_ms),
        "window": window_text or "the whole span",
        "window_ms": window_ms,
        "alert_rule": f"realized_value < expected_value - {ALERT_STANDARD_ERRORS:g} x "
        "gap_standard_error (decisions with an outcome)",
        "windows": [windows[w] for w in sorted(windows)],
    }
