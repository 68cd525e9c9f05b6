"""Calibration maps for exported models: fit with scikit-learn, put in the ONNX graph.

Every exported graph keeps its raw output (``score`` / ``scores``) and gains a second one
(``probability`` ``[N, 1]`` / ``probabilities`` ``[N, K]``): the calibration map applied
to the raw output, computed inside the graph in float64 and cast to float32. The network
is trained exactly as without calibration; the map is fitted either on **out-of-fold**
scores of the same recipe (stratified K-fold on the training rows, shuffled with the split
seed, each fold's network seeded as the final one) or on a **held-back** part of the
training rows (``--calibration-size``). The held-out split is never used for fitting.

What each map computes is defined once, in :mod:`costaware.calibration`; here they are
fitted (``_SigmoidCalibration`` on ``logit(score)``, ``IsotonicRegression(out_of_bounds=
"clip")``, temperature and vector scaling by minimising the log loss with scipy) and
turned into ONNX nodes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from costaware import calibration as cal
from costaware.card import (
    BINARY_METHODS,
    MULTICLASS_METHODS,
    Calibration,
    CalibrationHeldOut,
    CalibrationQuality,
    IsotonicMap,
    PriorShiftBaseline,
    SigmoidMap,
    TemperatureMap,
    VectorMap,
)

NONE = "none"
METHODS = (*BINARY_METHODS, *MULTICLASS_METHODS, NONE)
BINARY_DEFAULT = "sigmoid"
MULTICLASS_DEFAULT = "temperature"
DEFAULT_FOLDS = 5
# The in-graph probability against scikit-learn's (or, for the multiclass maps, which
# scikit-learn lacks, costaware.calibration's) on the held-out split; export fails beyond.
MAP_PARITY_TOLERANCE = 1e-6

Task = Literal["binary", "multiclass"]


class CalibrationError(ValueError):
    """A calibration that cannot be fitted on the rows given (bad input: exit 2)."""


# ---------------------------------------------------------------------------
# What the user asked for


@dataclass(frozen=True)
class CalibrationPlan:
    """``method`` (``none`` for no map), and where it is fitted: out-of-fold with ``folds``
    folds, or on a held-back fraction ``size`` of the training rows."""

    method: str
    folds: int = DEFAULT_FOLDS
    size: float | None = None

    @property
    def enabled(self) -> bool:
        return self.method != NONE

    @property
    def fitted_on(self) -> Literal["out_of_fold", "held_back"]:
        return "out_of_fold" if self.size is None else "held_back"


def default_plan(task: Task) -> CalibrationPlan:
    return CalibrationPlan(BINARY_DEFAULT if task == "binary" else MULTICLASS_DEFAULT)


def add_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    """``--calibration``, ``--calibration-folds`` and ``--calibration-size``."""
    methods = BINARY_METHODS if task == "binary" else MULTICLASS_METHODS
    default = BINARY_DEFAULT if task == "binary" else MULTICLASS_DEFAULT
    group = parser.add_argument_group("calibration")
    group.add_argument(
        "--calibration",
        default=default,
        metavar="|".join((*methods, NONE)),
        help="the map from the raw score to the probability the graph also outputs "
        f"(default %(default)s; {NONE}: no map, every answer then says calibrated: false)",
    )
    group.add_argument(
        "--calibration-folds",
        type=int,
        default=DEFAULT_FOLDS,
        metavar="K",
        help="fit the map on out-of-fold scores of K extra fits of the same recipe "
        "(default %(default)s)",
    )
    group.add_argument(
        "--calibration-size",
        type=float,
        default=None,
        metavar="F",
        help="instead, hold back this fraction of the training rows (stratified) for the "
        "map; the network is then fitted on the rest",
    )


def plan_from_args(args: argparse.Namespace, task: Task) -> CalibrationPlan:
    """The plan the options ask for, or a CalibrationError naming the option."""
    return make_plan(args.calibration, task, args.calibration_folds, args.calibration_size)


def make_plan(
    method: str, task: Task, folds: int = DEFAULT_FOLDS, size: float | None = None
) -> CalibrationPlan:
    methods = BINARY_METHODS if task == "binary" else MULTICLASS_METHODS
    if method not in METHODS:
        raise CalibrationError(
            f"--calibration {method!r}: unknown method (one of {', '.join((*methods, NONE))})"
        )
    if method != NONE and method not in methods:
        raise CalibrationError(
            f"--calibration {method}: applies to {'multiclass' if task == 'binary' else 'binary'}"
            f" models; a {task} model takes {', '.join((*methods, NONE))}"
        )
    if folds < 2:
        raise CalibrationError(f"--calibration-folds {folds}: cross-fitting needs at least 2")
    if size is not None and not 0 < size < 1:
        raise CalibrationError(f"--calibration-size {size:g} must be between 0 and 1")
    return CalibrationPlan(method, folds, size)


def check_rows(plan: CalibrationPlan, labels: np.ndarray, *, where: str = "training split") -> None:
    """Refuse, before any training, rows the plan cannot fit a map on: every fold (or the
    held-back part and the rest) needs rows of every class."""
    if not plan.enabled:
        return
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    counts = np.bincount(y, minlength=max(2, int(y.max(initial=0)) + 1))
    rarest = int(counts.min())
    if plan.size is None:
        if rarest < plan.folds:
            raise CalibrationError(
                f"--calibration-folds {plan.folds}: the {where} has {len(y)} rows and only "
                f"{rarest} of class {int(counts.argmin())}; each of the {plan.folds} folds "
                f"needs one of each class (use fewer folds, or --calibration none)"
            )
        return
    held = int(np.floor(rarest * plan.size))
    if held < 1 or rarest - held < 1:
        raise CalibrationError(
            f"--calibration-size {plan.size:g}: the {where} has only {rarest} rows of class "
            f"{int(counts.argmin())}; the held-back part and the rest each need one"
        )


def folds_of(labels: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold shuffled with ``seed``: (fit positions, out-of-fold positions)."""
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros((len(labels), 1)), labels))


def held_back(labels: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions the network is fitted on, held-back positions the map is fitted on)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    fit, back = train_test_split(index, test_size=size, random_state=seed, stratify=labels)
    return np.sort(fit), np.sort(back)


def out_of_fold(
    plan: CalibrationPlan,
    labels: np.ndarray,
    seed: int,
    fold_output: Callable[[np.ndarray, np.ndarray], np.ndarray],
    progress: Callable[[str], None] | None = None,
    name: str = "",
) -> np.ndarray:
    """The out-of-fold raw outputs: ``fold_output(fit positions, out positions)`` fits the
    recipe on the first and returns its graph output on the second."""
    folds = folds_of(labels, plan.folds, seed)
    out: np.ndarray | None = None
    for i, (fit, held) in enumerate(folds, start=1):
        if progress:
            progress(f"[{name}] calibration: fold {i}/{plan.folds} ({len(held)} rows out of fold)")
        part = np.asarray(fold_output(fit, held), dtype=np.float64)
        if out is None:
            out = np.zeros((len(labels), *part.shape[1:]))
        out[held] = part
    assert out is not None
    return out


def fit_with_map(
    plan: CalibrationPlan,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    *,
    fit: Callable[[np.ndarray, np.ndarray, bool], Any],
    output: Callable[[Any, np.ndarray], np.ndarray],
    fit_map: Callable[[np.ndarray, np.ndarray], FittedCalibration],
    progress: Callable[[str], None] | None = None,
    name: str = "",
) -> tuple[Any, FittedCalibration | None]:
    """The network, fitted exactly as without calibration on ``x, y`` (less the held-back
    part with ``plan.size``), and the map fitted on the graph output of rows it was not
    fitted on: out-of-fold fits of the same recipe, or the held-back part.

    ``fit(x, y, final)`` fits the recipe (``final`` for the exported network, which reports
    progress), ``output(model, x)`` is the graph's raw output, ``fit_map(raw, labels)`` fits
    the map."""
    if not plan.enabled:
        return fit(x, y, True), None
    if plan.size is not None:
        keep, back = held_back(y, plan.size, seed)
        model = fit(x[keep], y[keep], True)
        return model, fit_map(output(model, x[back]), y[back])
    model = fit(x, y, True)

    def fold(inside: np.ndarray, out: np.ndarray) -> np.ndarray:
        return output(fit(x[inside], y[inside], False), x[out])

    return model, fit_map(out_of_fold(plan, y, seed, fold, progress, name), y)


# ---------------------------------------------------------------------------
# Fitting


@dataclass(frozen=True)
class FittedCalibration:
    """A fitted map: its card form, the reference it must equal (scikit-learn's fitted
    calibrator for binary maps), and on what it was fitted."""

    map: Any  # costaware.card.CalibrationMap
    reference: Callable[[np.ndarray], np.ndarray]
    fitted_on: Literal["out_of_fold", "held_back"]
    rows: int
    folds: int | None


def fit_binary(
    plan: CalibrationPlan,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    sample_weight: np.ndarray | None = None,
) -> FittedCalibration:
    """Fit ``plan.method`` on raw scores ``[N]`` and 0/1 labels (``sample_weight`` puts a
    negative subsample back on the population's base rate)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    card_map: Any
    if plan.method == "sigmoid":
        from sklearn.calibration import _SigmoidCalibration

        sigmoid = _SigmoidCalibration().fit(cal.logit(s), y, sample_weight)
        card_map = SigmoidMap(method="sigmoid", a=float(sigmoid.a_), b=float(sigmoid.b_))

        def reference(raw: np.ndarray) -> np.ndarray:
            return sigmoid.predict(cal.logit(np.asarray(raw, dtype=np.float64).reshape(-1)))

    elif plan.method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(s, y, sample_weight)
        card_map = IsotonicMap(
            method="isotonic",
            x_thresholds=[float(v) for v in iso.X_thresholds_],
            y_thresholds=[float(v) for v in iso.y_thresholds_],
        )

        def reference(raw: np.ndarray) -> np.ndarray:
            return iso.predict(np.asarray(raw, dtype=np.float64).reshape(-1))

    else:
        raise CalibrationError(f"--calibration {plan.method}: not a binary method")
    return FittedCalibration(
        card_map, reference, plan.fitted_on, len(y), plan.folds if plan.size is None else None
    )


def fit_multiclass(
    plan: CalibrationPlan, probabilities: np.ndarray, labels: np.ndarray
) -> FittedCalibration:
    """Temperature (one T) or vector scaling (a weight and bias a class) of the raw class
    probabilities ``[N, K]``, by minimising the log loss of the class indices."""
    from scipy.optimize import minimize

    logq = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), cal.LOGIT_EPS, 1.0))
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    n, k = logq.shape

    def nll(z: np.ndarray) -> float:
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(n), y] - np.log(np.exp(z).sum(axis=1))).mean())

    card_map: Any
    if plan.method == "temperature":
        # optimise log T so that T stays positive
        found = minimize(lambda t: nll(logq / np.exp(t[0])), x0=[0.0], method="L-BFGS-B")
        card_map = TemperatureMap(method="temperature", temperature=float(np.exp(found.x[0])))
    elif plan.method == "vector":
        found = minimize(
            lambda v: nll(logq * v[:k] + v[k:]),
            x0=np.r_[np.ones(k), np.zeros(k)],
            method="L-BFGS-B",
        )
        card_map = VectorMap(
            method="vector",
            weights=[float(v) for v in found.x[:k]],
            biases=[float(v) for v in found.x[k:]],
        )
    else:
        raise CalibrationError(f"--calibration {plan.method}: not a multiclass method")
    return FittedCalibration(
        card_map,
        lambda raw: cal.apply_map(card_map, raw),
        plan.fitted_on,
        len(y),
        plan.folds if plan.size is None else None,
    )


# ---------------------------------------------------------------------------
# The map as ONNX nodes


def with_map(model_bytes: bytes, raw_output: str, card_map: Any, output_name: str) -> bytes:
    """The graph with ``output_name`` = the map applied to ``raw_output`` appended (float64
    inside, float32 out, the raw output's shape)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    raw_info = next(o for o in graph.output if o.name == raw_output)
    nodes: list[Any] = []
    constants: list[Any] = []

    def const(name: str, value: Any, dtype: Any = np.float64) -> str:
        full = f"calibration/{name}"
        constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), full))
        return full

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        full = f"calibration/{name}"
        nodes.append(helper.make_node(op, inputs, [full], name=full, **attrs))
        return full

    x = node("Cast", [raw_output], "raw64", to=TensorProto.DOUBLE)
    method = card_map.method
    if method == "sigmoid":
        s = node("Clip", [x, const("eps", cal.LOGIT_EPS), const("one_eps", 1 - cal.LOGIT_EPS)], "s")
        one_minus = node("Sub", [const("one", 1.0), s], "one_minus_s")
        f = node("Sub", [node("Log", [s], "log_s"), node("Log", [one_minus], "log_1ms")], "logit")
        z = node(
            "Add", [node("Mul", [f, const("a", card_map.a)], "af"), const("b", card_map.b)], "z"
        )
        denominator = node("Add", [node("Exp", [z], "exp_z"), const("one_", 1.0)], "den")
        out = node("Reciprocal", [denominator], "p")
    elif method == "isotonic":
        # piecewise-linear: y0 + sum_i slope_i * clip(x - x_i, 0, width_i); a score outside
        # [x_0, x_last] gets the end value (scikit-learn's out_of_bounds="clip")
        xs = np.asarray(card_map.x_thresholds, dtype=np.float64)
        ys = np.asarray(card_map.y_thresholds, dtype=np.float64)
        if len(xs) == 1:
            out = node(
                "Add", [node("Mul", [x, const("zero", 0.0)], "zero_x"), const("y0", ys[0])], "p"
            )
        else:
            width = np.diff(xs)
            slope = np.divide(np.diff(ys), width, out=np.zeros_like(width), where=width > 0)
            shifted = node("Sub", [x, const("x_low", xs[:-1])], "shifted")
            clipped = node(
                "Min",
                [node("Max", [shifted, const("zero", 0.0)], "above"), const("width", width)],
                "within",
            )
            rise = node("Mul", [clipped, const("slope", slope)], "rise")
            total = node("ReduceSum", [rise, const("axes", [1], np.int64)], "sum", keepdims=1)
            out = node("Add", [total, const("y0", ys[0])], "p")
    elif method in ("temperature", "vector"):
        q = node("Clip", [x, const("eps", cal.LOGIT_EPS), const("one", 1.0)], "q")
        logq = node("Log", [q], "log_q")
        if method == "temperature":
            z = node("Div", [logq, const("temperature", card_map.temperature)], "z")
        else:
            scaled = node("Mul", [logq, const("weights", card_map.weights)], "wz")
            z = node("Add", [scaled, const("biases", card_map.biases)], "z")
        out = node("Softmax", [z], "p", axis=1)
    else:
        raise CalibrationError(f"unknown calibration method {method!r}")
    nodes.append(
        helper.make_node("Cast", [out], [output_name], name="calibration/out", to=TensorProto.FLOAT)
    )
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    info = onnx.ValueInfoProto()
    info.CopyFrom(raw_info)
    info.name = output_name
    graph.output.append(info)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


# ---------------------------------------------------------------------------
# Parity and the card section


def check_parity(fitted: FittedCalibration, raw: np.ndarray, graph: np.ndarray, name: str) -> float:
    """The largest gap between the graph's probability and the reference's on the
    held-out split; an ExportError beyond :data:`MAP_PARITY_TOLERANCE`."""
    from training.export import ExportError

    expected = np.asarray(fitted.reference(raw), dtype=np.float64)
    got = np.asarray(graph, dtype=np.float64).reshape(expected.shape)
    gap = float(np.max(np.abs(got - expected)))
    if not gap <= MAP_PARITY_TOLERANCE:
        raise ExportError(
            f"{name}: the graph's calibrated output differs from the fitted {fitted.map.method} "
            f"map by {gap:.3g} (> {MAP_PARITY_TOLERANCE:g}) on the held-out split; not exported"
        )
    return gap


def section(
    fitted: FittedCalibration,
    output_name: str,
    labels: np.ndarray,
    raw: np.ndarray,
    calibrated: np.ndarray,
    *,
    prior_shift_weight: float | None = None,
) -> Calibration:
    """The card's ``calibration`` section: the map, how it was fitted and the held-out
    quality of the raw output (``before``) and of the graph's probability (``after``)."""
    raw64 = np.asarray(raw, dtype=np.float64)
    calibrated64 = np.asarray(calibrated, dtype=np.float64)
    if raw64.ndim == 2 and raw64.shape[1] == 1:
        raw64, calibrated64 = raw64.reshape(-1), calibrated64.reshape(-1)
    baseline = None
    if prior_shift_weight is not None:
        baseline = PriorShiftBaseline(
            weight=prior_shift_weight,
            held_out=CalibrationQuality(
                **cal.quality(cal.prior_shift_inverse(raw64, prior_shift_weight), labels)
            ),
        )
    return Calibration(
        map=fitted.map,
        output_name=output_name,
        fitted_on=fitted.fitted_on,
        rows=fitted.rows,
        folds=fitted.folds,
        held_out=CalibrationHeldOut(
            before=CalibrationQuality(**cal.quality(raw64, labels)),
            after=CalibrationQuality(**cal.quality(calibrated64, labels)),
        ),
        prior_shift_baseline=baseline,
    )
