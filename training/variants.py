"""Variant specs: what to train and with which loss.

A variant is a name plus a loss (``builtin`` cross-entropy or ``custom``
cost-weighted) and the fitting hyperparameters. A variant may be given a cost
matrix of outcome values instead of weights; the weights then follow as
``fn_cost = v_tp - v_fn`` and ``fp_cost = v_tn - v_fp`` (Elkan's normalisation:
only the differences between deciding right and wrong matter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from costaware.decision import MODEL_NAME_RE
from costaware.economics import CostMatrix

LossType = Literal["builtin", "custom"]
NAME_PATTERN = MODEL_NAME_RE
DEFAULT_EPOCHS = 50
DEFAULT_SEED = 1
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 0.01


class VariantError(ValueError):
    """An invalid variant specification; the message names the field."""


@dataclass(frozen=True)
class VariantSpec:
    name: str
    loss: LossType = "builtin"
    fn_cost: float = 1.0
    fp_cost: float = 1.0
    epochs: int = DEFAULT_EPOCHS
    seed: int = DEFAULT_SEED
    batch_size: int = DEFAULT_BATCH_SIZE
    learning_rate: float = DEFAULT_LEARNING_RATE
    cost_matrix: CostMatrix | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise VariantError(
                f"variant name {self.name!r}: use letters, digits, '.', '_', '-' "
                "(up to 64, starting with a letter or digit)"
            )
        where = f"variant {self.name}"
        if self.loss not in ("builtin", "custom"):
            raise VariantError(f"{where}: loss {self.loss!r} must be 'builtin' or 'custom'")
        for field in ("fn_cost", "fp_cost"):
            value = getattr(self, field)
            if not math.isfinite(value) or value < 0:
                raise VariantError(f"{where}: {field} {value:g} must be a finite number >= 0")
        if self.loss == "custom" and self.fn_cost == 0 and self.fp_cost == 0:
            raise VariantError(f"{where}: fn_cost and fp_cost are both 0, nothing to learn")
        for field in ("epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise VariantError(f"{where}: {field} must be at least 1")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise VariantError(f"{where}: learning_rate must be a positive number")

    def with_(self, **changes: object) -> VariantSpec:
        return replace(self, **changes)


def weights_from_cost_matrix(costs: CostMatrix) -> tuple[float, float]:
    """``(fn_cost, fp_cost) = (v_tp - v_fn, v_tn - v_fp)``; both must be >= 0 and not both 0."""
    fn_cost, fp_cost = costs.loss_weights()
    if fn_cost < 0 or fp_cost < 0:
        raise VariantError(
            f"cost matrix gives fn_cost = v_tp - v_fn = {fn_cost:g} and "
            f"fp_cost = v_tn - v_fp = {fp_cost:g}; both must be >= 0 "
            "(a correct decision must be worth at least as much as a wrong one)"
        )
    if fn_cost == 0 and fp_cost == 0:
        raise VariantError(
            "cost matrix gives fn_cost = fp_cost = 0: every decision is worth the same"
        )
    return fn_cost, fp_cost


def variant_from_cost_matrix(name: str, costs: CostMatrix, **options: object) -> VariantSpec:
    """A custom-loss variant whose weights derive from the outcome values ``costs``."""
    fn_cost, fp_cost = weights_from_cost_matrix(costs)
    return VariantSpec(
        name=name, loss="custom", fn_cost=fn_cost, fp_cost=fp_cost, cost_matrix=costs, **options
    )


def reference_variants(epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED) -> list[VariantSpec]:
    """The three models of the reference experiment."""
    return [
        VariantSpec(
            "builtin",
            loss="builtin",
            epochs=epochs,
            seed=seed,
            description="Keras binary cross-entropy (the reference's baseline)",
        ),
        VariantSpec(
            "custom-5to1",
            loss="custom",
            fn_cost=5.0,
            fp_cost=1.0,
            epochs=epochs,
            seed=seed,
            description="cost-weighted loss, a false negative 5 times a false positive",
        ),
        VariantSpec(
            "medical",
            loss="custom",
            fn_cost=200.0,
            fp_cost=1.0,
            epochs=epochs,
            seed=seed,
            description="cost-weighted loss, a false negative 200 times a false positive",
        ),
    ]


_OUTCOMES = ("tp", "fp", "tn", "fn")
_FIELDS = {"name", "loss", "fn_cost", "fp_cost", "epochs", "seed", "batch_size", "learning_rate"}


def parse_variant(
    text: str, *, epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED
) -> VariantSpec:
    """Parse ``name=X,loss=custom,fn_cost=5,fp_cost=1[,epochs=..,seed=..]`` or, with a
    cost matrix, ``name=X,tp=-35280,fp=-1287.67,tn=0,fn=-252000``."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise VariantError(f"variant {text!r}: {part!r} is not key=value")
        if key in fields:
            raise VariantError(f"variant {text!r}: {key} given twice")
        fields[key] = value.strip()
    unknown = sorted(set(fields) - _FIELDS - set(_OUTCOMES))
    if unknown:
        raise VariantError(
            f"variant {text!r}: unknown field {unknown[0]!r} (known: name, loss, fn_cost, "
            "fp_cost, epochs, seed, batch_size, learning_rate, or tp, fp, tn, fn)"
        )
    if "name" not in fields:
        raise VariantError(f"variant {text!r}: name=... is required")
    options: dict[str, object] = {"epochs": epochs, "seed": seed}
    for key, kind in (
        ("epochs", int),
        ("seed", int),
        ("batch_size", int),
        ("learning_rate", float),
    ):
        if key in fields:
            options[key] = _number(text, key, fields[key], kind)
    matrix_keys = set(_OUTCOMES) & set(fields)
    if matrix_keys:
        missing = [k for k in _OUTCOMES if k not in fields]
        if missing:
            raise VariantError(
                f"variant {text!r}: cost matrix needs tp, fp, tn and fn; {missing[0]} missing"
            )
        if fields.get("loss", "custom") != "custom":
            raise VariantError(f"variant {text!r}: a cost matrix implies loss=custom")
        costs = CostMatrix(
            **{k: _number(text, k, fields[k], float) for k in ("tp", "fp", "tn", "fn")}
        )
        return variant_from_cost_matrix(fields["name"], costs, **options)
    loss = fields.get("loss", "custom" if {"fn_cost", "fp_cost"} & set(fields) else "builtin")
    if loss == "builtin" and ({"fn_cost", "fp_cost"} & set(fields)):
        raise VariantError(f"variant {text!r}: fn_cost/fp_cost need loss=custom")
    return VariantSpec(
        name=fields["name"],
        loss=loss,  # type: ignore[arg-type]  # validated in __post_init__
        fn_cost=_number(text, "fn_cost", fields.get("fn_cost", "1"), float),
        fp_cost=_number(text, "fp_cost", fields.get("fp_cost", "1"), float),
        **options,  # type: ignore[arg-type]
    )


def _number(text: str, key: str, value: str, kind: type) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise VariantError(f"variant {text!r}: {key}={value!r} is not {what}") from None
    if kind is float and not math.isfinite(number):
        raise VariantError(f"variant {text!r}: {key}={value!r} is not a finite number")
    return number
