"""Request decoding and response encoding, shared by every route that takes instances.

Decoders turn a body (JSON, JSON lines, CSV) into a float64 matrix ``[N, n_features]``
or raise a :class:`~service.errors.ServiceError` whose detail names the row, column or
field at fault. Encoders turn :class:`~service.dataplane.Predictions` into JSON, CSV or
JSON lines.
No FastAPI here: these are plain functions the bench also runs in-process.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from pydantic import ValidationError

from costaware.economics import EconomicsError, as_number
from costaware.tabular import TabularError, parse_numeric_csv
from service.errors import (
    InvalidInputError,
    MalformedRequestError,
    NotAcceptableError,
    UnsupportedMediaTypeError,
)
from service.schemas import (
    FLOAT32_MAX,
    ON_OUT_OF_RANGE,
    PredictRequest,
    describe,
    translate_validation_error,
)
from service.valuation import ValuedPredictions

if TYPE_CHECKING:
    from service.dataplane import Predictions

JSON = "application/json"
CSV = "text/csv"
JSONLINES = "application/jsonlines"
# Spellings of JSON lines seen in the wild (SageMaker documents both of the first two).
JSONLINES_ALIASES = frozenset({JSONLINES, "application/x-jsonlines", "application/jsonl"})
RESPONSE_TYPES = (JSON, CSV, JSONLINES)
_FLOAT32_MAX = FLOAT32_MAX


# ---------------------------------------------------------------------------------------
# Media types


def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``'text/csv; label_size=0'`` -> ``('text/csv', {'label_size': '0'})`` (lower-cased)."""
    if not header or not header.strip():
        return "", {}
    main, *rest = header.split(";")
    params: dict[str, str] = {}
    for part in rest:
        key, sep, value = part.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), params


def request_format(content_type: str | None) -> str:
    """The decoder to use for a ``Content-Type`` header: one of JSON, CSV, JSONLINES."""
    media, params = parse_media_type(content_type)
    if media == JSON:
        return JSON
    if media in JSONLINES_ALIASES:
        return JSONLINES
    if media == CSV:
        label_size = params.get("label_size", "0")
        if label_size != "0":
            raise UnsupportedMediaTypeError(
                f"Content-Type {content_type!r}: label_size={label_size} is not supported; "
                "send features only (label_size=0)"
            )
        return CSV
    shown = repr(content_type) if media else "missing"
    raise UnsupportedMediaTypeError(
        f"Content-Type {shown} is not supported; send {JSON}, {CSV} or {JSONLINES}"
    )


def _accept_ranges(accept: str) -> list[tuple[float, int, str]]:
    ranges = []
    for order, item in enumerate(accept.split(",")):
        media, params = parse_media_type(item)
        if not media:
            continue
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 0.0
        ranges.append((quality, order, media))
    return ranges


def _matches(media_range: str, offered: str) -> bool:
    if media_range in ("*/*", "*"):
        return True
    if media_range.endswith("/*"):
        return offered.split("/")[0] == media_range[:-2]
    if media_range in JSONLINES_ALIASES:
        return offered == JSONLINES
    return media_range == offered


def negotiate(accept: str | None, offered: Sequence[str] = RESPONSE_TYPES) -> str:
    """Pick the response type for an ``Accept`` header; the first offer is the default.

    Explicit types beat wildcards at equal quality; ``q=0`` excludes a type.
    """
    if accept is None or not accept.strip():
        return offered[0]
    if accept == "*/*" or accept == offered[0]:
        # What nearly every client sends; the general algorithm below picks the first
        # offer for either, without parsing and ranking.
        return offered[0]
    ranges = _accept_ranges(accept)
    best: tuple[float, int, int] | None = None
    chosen = None
    for quality, order, media_range in ranges:
        if quality <= 0:
            continue
        specificity = 0 if "*" in media_range else 1
        for preference, offer in enumerate(offered):
            excluded = any(q <= 0 and _matches(r, offer) and "*" not in r for q, _, r in ranges)
            if excluded or not _matches(media_range, offer):
                continue
            key = (quality, specificity, -order * 100 - preference)
            if best is None or key > best:
                best, chosen = key, offer
    if chosen is None:
        raise NotAcceptableError(f"Accept {accept!r} allows none of {', '.join(offered)}")
    return chosen


# ---------------------------------------------------------------------------------------
# Decoding


def _convert_row(row: Any, where: str, features: Sequence[str]) -> list[float]:
    """One instance (array or object) as floats, or an error naming where it went wrong;
    ``where`` names the instance (``instances[3]``, ``body line 4``)."""
    n = len(features)
    if isinstance(row, dict):
        unknown = [key for key in row if key not in features]
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown feature {unknown[0]!r}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            )
        missing = [name for name in features if name not in row]
        if missing:
            raise InvalidInputError(
                f"{where}: missing feature {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        values = [row[name] for name in features]
    elif isinstance(row, list):
        if len(row) != n:
            raise InvalidInputError(f"{where}: expected {n} values, got {len(row)}")
        values = row
    else:
        raise InvalidInputError(
            f"{where}: an instance must be an array of {n} numbers or an object keyed "
            f"by feature name, got {describe(row)}"
        )
    out = []
    for c, value in enumerate(values):
        # bool is an int to Python, but true/false in a feature vector is a client bug.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(
                f"{where}[{c}] ({features[c]}): {describe(value)} is not a number"
            )
        try:
            number = as_number(value, f"{where}[{c}] ({features[c]})")
        except EconomicsError as exc:
            raise InvalidInputError(str(exc)) from None
        # abs(value) for an int compares exactly: an integer a little past float32's
        # maximum rounds to it as a float.
        if not math.isfinite(number) or abs(number) > _FLOAT32_MAX or abs(value) > _FLOAT32_MAX:
            raise InvalidInputError(
                f"{where}[{c}] ({features[c]}): {describe(value)} is not a finite number "
                "within float32 range"
            )
        out.append(number)
    return out


def instances_to_matrix(
    instances: Any,
    features: Sequence[str],
    source: str,
    row_names: Callable[[int], str] | None = None,
) -> np.ndarray:
    """A list of instances (arrays or objects keyed by feature name) as float64 [N, F].

    Errors name an instance as ``row_names(i)``, by default ``source[i]``.
    """
    if not isinstance(instances, list):
        raise InvalidInputError(
            f"{source}: expected a list of instances, got {describe(instances)}"
        )
    if not instances:
        raise InvalidInputError(f"{source}: empty batch, send at least one instance")
    n = len(features)
    # Fast path for the common all-arrays case: one bulk conversion, then a full check
    # only if it failed or let something odd through (strings, booleans, null).
    if all(type(row) is list for row in instances):
        try:
            matrix = np.array(instances, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):  # OverflowError: ints past float64
            matrix = None
        if (
            matrix is not None
            and matrix.shape == (len(instances), n)
            and _plain_numbers(instances)
            and _in_range(matrix)
        ):
            return matrix
    name = row_names or (lambda r: f"{source}[{r}]")
    rows = [_convert_row(row, name(r), features) for r, row in enumerate(instances)]
    return np.array(rows, dtype=np.float64).reshape(len(rows), n)


_NUMBER_TYPES = frozenset({float, int})


def _plain_numbers(instances: list[list[Any]]) -> bool:
    # Exact types (a bool is an int subclass, so isinstance would let true/false through);
    # a set test over map(type) runs in C, where a generator runs a Python frame per value.
    return all(_NUMBER_TYPES.issuperset(map(type, row)) for row in instances)


def _in_range(matrix: np.ndarray) -> bool:
    # One reduction: NaN and inf both fail the comparison. The ufunc's own reduce, because
    # ndarray.max goes through a Python wrapper that costs more than a 30-value maximum.
    # Exactly float32's maximum may stand for a larger integer: the exact check decides.
    return bool(np.maximum.reduce(np.abs(matrix), axis=None) < _FLOAT32_MAX)


def _reject_constant(name: str) -> float:
    # Python's json accepts NaN/Infinity, which are not JSON; refuse them while parsing so
    # the error can say so (a later finiteness check could only say "not finite").
    raise ValueError(f"{name} is not valid JSON")


# json.loads with a keyword builds a new decoder per call; one shared decoder (it keeps no
# state between calls) saves that on every request.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _load_json(data: str | bytes, source: str) -> Any:
    """Parse JSON text; errors name ``source`` and say where.

    orjson parses a one-instance body in a tenth of the standard library's time; it is
    stricter (no NaN/Infinity, no integers past 64 bits, UTF-8 only), so whatever it
    refuses goes to the standard parser, which either accepts it as before or raises with
    the message clients have always had. Errors are the slow path either way.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    text = data if isinstance(data, str) else body_text(data, source)
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedRequestError(
            f"{source}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise InvalidInputError(f"{source}: {exc} (send finite numbers only)") from None
    except RecursionError:
        raise MalformedRequestError(
            f"{source}: JSON nested too deeply (instances are arrays of numbers or flat objects)"
        ) from None


BOM = b"\xef\xbb\xbf"


def body_text(body: bytes, source: str) -> str:
    """The one rule for the text of every request body (JSON, JSON lines, CSV, on every
    route): UTF-8, and a leading byte order mark is dropped (CSV saved by Excel as UTF-8
    starts with one); anything else is a 400 naming the first bad byte."""
    try:
        return body.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start + (len(BOM) if body.startswith(BOM) else 0)
        raise MalformedRequestError(f"{source}: not UTF-8 text (byte {start})") from None


@dataclass(frozen=True)
class JsonRequest:
    """The ``/predict`` body: instances still undecoded, because objects need the model's
    feature names and the model is named in the same body."""

    instances: Any
    model: str | None = None
    threshold: float | None = None
    margin: float | None = None
    on_out_of_range: str = "flag"
    # Decide by expected value under this matrix (service.valuation); still undecoded,
    # because a per-instance list is checked against the number of instances.
    cost_matrix: Any = None
    ids: list[Any] | None = None  # the instances' own prediction ids, checked later


def margin_value(value: Any, field: str) -> float:
    """A margin: a score margin in [0, 1], or (deciding by expected value) any finite
    number >= 0 in dollars; the data plane refuses a value above 1 where it is a score
    margin, with the same message as :func:`unit_interval`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{field}: {describe(value)} is not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InvalidInputError(
            f"{field}: {value} is outside [0, 1] (a score margin) and is not a dollar "
            "margin >= 0 either"
        )
    return number


def unit_interval(value: Any, field: str) -> float:
    """``value`` as a float in [0, 1], or an InvalidInputError naming ``field``."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidInputError(f"{field}: {describe(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"{field}: {describe(value)} is not a number")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{field}: {value} is outside [0, 1]")
    return float(value)


def decode_json_request(body: bytes, source: str = "body") -> JsonRequest:
    """Parse a ``/predict`` body; a bare JSON array is taken as the instances."""
    payload = _load_json(body, source)
    if isinstance(payload, list):
        return JsonRequest(instances=payload)
    if not isinstance(payload, dict):
        raise InvalidInputError(
            f"{source}: expected an object with 'instances' (or an array of instances), "
            f"got {describe(payload)}"
        )
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        # The instance decoder names what is wrong with them; the other fields first.
        payload = {**payload, "instances": [None]} if "instances" in payload else payload
    try:
        request = PredictRequest.model_validate(payload)
    except ValidationError as exc:
        field, message = translate_validation_error(
            exc, f"{source}.", sorted(PredictRequest.model_fields), {"instances": "field required"}
        )
        raise InvalidInputError(f"{field}: {message}") from None
    return JsonRequest(
        instances=instances,
        model=request.model,
        threshold=None if request.threshold is None else float(request.threshold),
        margin=None if request.margin is None else float(request.margin),
        on_out_of_range=request.on_out_of_range or "flag",
        cost_matrix=request.cost_matrix,
        ids=request.ids,
    )


def on_out_of_range(value: Any, source: str) -> str:
    """``flag`` (the default) or ``refuse``, or an InvalidInputError naming the field."""
    if value is None:
        return "flag"
    if value not in ON_OUT_OF_RANGE:
        raise InvalidInputError(
            f"{source}.on_out_of_range: expected 'flag' or 'refuse', got {describe(value)}"
        )
    return value


def decode_jsonlines(body: bytes, features: Sequence[str], source: str = "body") -> np.ndarray:
    """One instance (array or object) per non-blank line."""
    instances, line_numbers = [], []
    for line_no, line in enumerate(body_text(body, source).splitlines(), start=1):
        if line.strip():
            instances.append(_load_json(line, f"{source} line {line_no}"))
            line_numbers.append(line_no)
    if not instances:
        raise InvalidInputError(f"{source}: empty batch, send at least one JSON line")
    return instances_to_matrix(
        instances, features, source, row_names=lambda r: f"{source} line {line_numbers[r]}"
    )


def decode_csv(body: bytes, features: Sequence[str], source: str = "body") -> np.ndarray:
    """Headerless CSV, one instance per line, in the card's feature order."""
    try:
        _, matrix = parse_numeric_csv(
            body_text(body, source), source=source, n_columns=len(features)
        )
    except TabularError as exc:
        if exc.column is not None and exc.column_name is None:
            exc.column_name = features[exc.column - 1]
        raise InvalidInputError(str(exc)) from None
    too_big = np.abs(matrix) > _FLOAT32_MAX
    if too_big.any():
        r, c = np.argwhere(too_big)[0]
        raise InvalidInputError(
            f"{source}, row {r + 1}, column {c + 1} ({features[c]}): "
            f"{float(matrix[r, c])!r} is outside float32 range"
        )
    return matrix


# ---------------------------------------------------------------------------------------
# Predictions and encoding


_BOOL = ("false", "true")
# ``probability``: the graph's calibrated output, null for a model without a map.
_RECORD = (
    '{{"id":{5},"score":{0},"probability":{4},"label":{1},"close_confusion":{2},'
    '"out_of_range":{3}}}'
)
_JSONLINES_RECORD = {c: _RECORD[:-2] + f',"calibrated":{_BOOL[c]}}}}}' for c in (False, True)}
# CSV: score, label (0/1), close_confusion (true/false), out_of_range: the names of the
# features outside the training range separated by ";" (empty when none, or when the card
# records no ranges), quoted as RFC 4180 says when a name holds a comma, quote or newline.
# A calibrated model's rows add its probability at the end (an uncalibrated model's rows
# keep their four columns).
_CSV_LINE = "{},{},{},{}"
_CSV_LINE_CALIBRATED = "{},{},{},{},{}"
CSV_COLUMNS = ("score", "label", "close_confusion", "out_of_range")
CSV_COLUMNS_CALIBRATED = (*CSV_COLUMNS, "probability")


def _json_names(names: list[str] | None) -> str:
    if names is None:
        return "null"
    return orjson.dumps(names).decode() if names else "[]"


def csv_lines(rows: Iterable[Sequence[str]]) -> list[str]:
    """Each row of text fields as one CSV line without its line end, by RFC 4180 through
    Python's csv module: a field holding a comma, a double quote, CR or LF is quoted and
    its quotes doubled; every other field is written as it is (so ordinary rows are just
    their fields joined by commas). The one CSV writer of the service and batch engine."""
    buffer = io.StringIO()
    # "\r\n" as the writer's line end so that a CR in a field is quoted too; the end
    # itself is cut off (the answers end lines with "\n").
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        lines.append(buffer.getvalue()[:-2])
    return lines


def csv_field(text: str) -> str:
    """One field as :func:`csv_lines` writes it."""
    return csv_lines([[text]])[0] if text else ""


def _csv_names(names: list[str] | None) -> str:
    return csv_field(";".join(names)) if names else ""


def score_text(scores: np.ndarray) -> list[str]:
    """Each float32 score as the shortest decimal that converts back to exactly it."""
    return np.asarray(scores, dtype=np.float32).astype(str).tolist()


def _lines(
    predictions: Predictions, template: str, names: Callable[[list[str] | None], str]
) -> list[str]:
    """One ``template``-formatted line (score, label 0/1, close true/false, out-of-range
    features shown by ``names``, probability or null) per instance."""
    flagged = predictions.out_of_range
    none = names(None if flagged is None else [])
    probability = predictions.probability
    probabilities = ["null"] * len(predictions) if probability is None else score_text(probability)
    # Ids hold no character JSON would escape (service.decisionlog.ids.ID_PATTERN).
    ids = (
        ["null"] * len(predictions)
        if predictions.ids is None
        else [f'"{i}"' for i in predictions.ids]
    )
    return [
        template.format(
            score,
            int(label),
            _BOOL[close],
            names(flagged[index]) if flagged and index in flagged else none,
            p,
            ids[index],
        )
        for index, (score, label, close, p) in enumerate(
            zip(
                score_text(predictions.scores),
                predictions.labels,
                predictions.close,
                probabilities,
                strict=True,
            )
        )
    ]


@functools.lru_cache(maxsize=1024)
def _json_head(model: str, version: str, threshold: float, margin: float, calibrated: bool) -> str:
    # Nearly every request repeats a model's card threshold and margin, so the head is
    # cached; json.dumps on a small dict costs as much as encoding a prediction.
    head = json.dumps(
        {
            "model": model,
            "version": version,
            "threshold": threshold,
            "margin": margin,
            "calibrated": calibrated,
        },
        separators=(",", ":"),
    )
    return head[:-1] + ',"predictions":['


def _valued_json(predictions: ValuedPredictions) -> bytes:
    return orjson.dumps({**predictions.head(), "predictions": predictions.records()})


def encode_json(predictions: Predictions | ValuedPredictions) -> bytes:
    if isinstance(predictions, ValuedPredictions):
        return _valued_json(predictions)
    head = _json_head(
        predictions.model,
        predictions.version,
        predictions.threshold,
        predictions.margin,
        predictions.calibrated,
    )
    records = ",".join(_lines(predictions, _RECORD, _json_names))
    return (head + records + "]}").encode()


def encode_jsonlines(predictions: Predictions | ValuedPredictions) -> bytes:
    """One JSON record per line, as in the JSON answer's ``predictions``, each with the
    head's ``calibrated`` (JSON lines has no head to carry it)."""
    if isinstance(predictions, ValuedPredictions):
        calibrated = predictions.calibrated is not None
        return b"".join(
            orjson.dumps({**record, "calibrated": calibrated}) + b"\n"
            for record in predictions.records()
        )
    template = _JSONLINES_RECORD[predictions.calibrated]
    return ("\n".join(_lines(predictions, template, _json_names)) + "\n").encode()


def encode_csv(predictions: Predictions | ValuedPredictions) -> bytes:
    """One line per instance, :data:`CSV_COLUMNS` (:data:`CSV_COLUMNS_CALIBRATED` for a
    calibrated model). Deciding by expected value:
    ``score,decision,ev_0,ev_1,close_confusion,out_of_range`` (binary) or
    ``p_1,...,p_K,decision,ev_1,...,ev_K,close_confusion,out_of_range`` (multiclass, the
    card's class order; ``ev_j`` = expected value of deciding class j), and for a
    calibrated model ``,probability`` (binary) or the raw ``,s_1,...,s_K`` (multiclass;
    ``p_j`` are then the calibrated probabilities the decision was taken on)."""
    return ("\n".join(prediction_csv_lines(predictions)) + "\n").encode()


def prediction_csv_lines(predictions: Predictions | ValuedPredictions) -> list[str]:
    """:func:`encode_csv`'s lines, one per instance (a quoted field may hold a line break,
    so the answer cannot be split at "\n")."""
    if isinstance(predictions, ValuedPredictions):
        flagged = predictions.out_of_range or {}
        extra = predictions.csv_extra()
        return csv_lines(
            [*row, ";".join(flagged.get(index) or []), *(extra[index] if extra else ())]
            for index, row in enumerate(predictions.csv_rows())
        )
    line = _CSV_LINE if predictions.probability is None else _CSV_LINE_CALIBRATED
    return _lines(predictions, line, _csv_names)


def encode_csv_with_ids(predictions: Predictions | ValuedPredictions) -> bytes:
    """:func:`encode_csv` with each prediction's id as one more column at the end (asked
    for with ``ids=true`` in X-Amzn-SageMaker-Custom-Attributes)."""
    ids = predictions.ids or [""] * len(predictions)
    lines = prediction_csv_lines(predictions)
    return ("\n".join(f"{line},{i}" for line, i in zip(lines, ids, strict=True)) + "\n").encode()


ENCODERS = {JSON: encode_json, CSV: encode_csv, JSONLINES: encode_jsonlines}
