"""The cost-weighted loss of the reference experiment.

Per sample ``y·|1−p|·fn_cost + (1−y)·|p|·fp_cost``, averaged without weights over
the batch: a missed positive costs ``fn_cost`` times its shortfall, a false alarm
``fp_cost`` times its score. Unlike cross-entropy it is linear in ``p``, which is
why the reference used it: the ratio of the two weights moves the decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def cost_weighted_loss(fn_cost: float, fp_cost: float) -> Callable[[Any, Any], Any]:
    """A Keras loss ``(y_true, y_pred) -> mean loss`` with the given weights."""
    import keras
    from keras import ops

    fn = float(fn_cost)
    fp = float(fp_cost)

    def loss(y_true: Any, y_pred: Any) -> Any:
        y = ops.cast(y_true, y_pred.dtype)
        per_sample = y * ops.abs(1.0 - y_pred) * fn + (1.0 - y) * ops.abs(y_pred) * fp
        return ops.mean(per_sample)

    loss.__name__ = f"cost_weighted_fn{fn:g}_fp{fp:g}"
    keras.saving.register_keras_serializable(package="costaware")(loss)
    return loss
