"""Build and fit the one-unit Keras model of the reference, deterministically."""

from __future__ import annotations

import os
import random
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data import Split
from training.variants import VariantSpec

Progress = Callable[[str], None]
PROGRESS_EVERY = 10
# Runs several SGD steps per graph call; the same updates in the same order (the
# weights are bit-identical to steps_per_execution=1), a fraction of the Python overhead.
STEPS_PER_EXECUTION = 64


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def import_keras() -> Any:
    """Import Keras with TensorFlow's C++ start-up chatter kept off stderr.

    TF_CPP_MIN_LOG_LEVEL silences most of it, but absl prints a few lines before
    its logging is initialised, straight to file descriptor 2; those are
    swallowed for the duration of the import only (a failing import still raises).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            import keras
            import tensorflow  # noqa: F401  # loaded here so its chatter is swallowed too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras


@dataclass(frozen=True)
class Scaler:
    """The StandardScaler fitted on the training split (``scale`` has zeros replaced by 1)."""

    mean: np.ndarray
    scale: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale


class KerasFit:
    """What a fitted one-layer model offers, binary or multiclass (``model``, ``scaler``)."""

    model: Any  # keras.Model
    scaler: Scaler

    @property
    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Kernel [f, units] and bias [units] of the single Dense layer."""
        kernel, bias = self.model.layers[-1].get_weights()
        return kernel, bias

    def network_output(self, x: np.ndarray) -> np.ndarray:
        """The network's float32 output for raw features, i.e. what it learned."""
        scaled = self.scaler.transform(x).astype(np.float32)
        return np.asarray(self.model(scaled, training=False))


@dataclass
class FittedModel(KerasFit):
    spec: VariantSpec
    model: Any  # keras.Model
    scaler: Scaler
    loss_history: list[float]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Keras scores (float32 [n]) for raw features."""
        return self.network_output(x).reshape(-1)


def fit_scaler(x_train: np.ndarray) -> Scaler:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    return Scaler(mean=scaler.mean_.copy(), scale=scaler.scale_.copy())


def set_determinism(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TF ops deterministic."""
    keras = import_keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# Seeds live in process-wide state (numpy's and TensorFlow's global generators and TF's
# op-seed counter): two fits running at once in one process, as on a Dask worker with
# several threads, would draw from each other's streams.
_ONE_FIT_AT_A_TIME = threading.Lock()


EpochReport = Callable[[int, dict[str, Any]], None]


def seeded_fit(
    spec: Any,
    build: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    on_epoch: EpochReport | None = None,
) -> tuple[Any, list[float]]:
    """Seed (:func:`set_determinism`), ``build()`` a compiled Keras model and fit it on the
    scaled ``x`` with ``spec``'s epochs and batch size, holding the process's one fit slot;
    the model and its loss per epoch. ``on_epoch(done, logs)`` after every epoch."""
    keras = import_keras()
    history: list[float] = []

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            history.append(float((logs or {}).get("loss", float("nan"))))
            if on_epoch:
                on_epoch(epoch + 1, logs or {})

    with _ONE_FIT_AT_A_TIME:
        set_determinism(spec.seed)
        model = build()
        model.fit(
            x,
            y,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            verbose=0,
            callbacks=[_Report()],
        )
    return model, history


def kernel_initializer(seed: int) -> Any:
    """Glorot-uniform with the seed Keras would draw first after ``set_determinism(seed)``.

    Keras draws an unseeded initializer's seed from Python's global ``random``, which other
    threads of the process share: a Dask worker's event loop draws from it while a fit runs
    (seen to change one fold fit of twelve on a cluster). A private generator seeded the same
    way gives the same number (the same weights, bit for bit) whatever else runs.
    """
    keras = import_keras()
    return keras.initializers.GlorotUniform(seed=random.Random(seed).randint(1, int(1e9)))


def build_model(n_features: int, spec: VariantSpec) -> Any:
    """Dense(1, sigmoid) with SGD and the variant's loss, compiled."""
    keras = import_keras()
    from training.losses import cost_weighted_loss

    model = keras.Sequential(
        [
            keras.Input(shape=(n_features,), name="features"),
            keras.layers.Dense(
                1, activation="sigmoid", kernel_initializer=kernel_initializer(spec.seed)
            ),
        ]
    )
    loss = (
        keras.losses.BinaryCrossentropy()
        if spec.loss == "builtin"
        else cost_weighted_loss(spec.fn_cost, spec.fp_cost)
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=spec.learning_rate),
        loss=loss,
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return model


def fit_variant(
    spec: VariantSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    progress: Progress | None = stderr_progress,
) -> FittedModel:
    """Scale, seed, build and fit one variant on raw training features and 0/1 labels."""
    scaler = fit_scaler(x_train)

    def report(done: int, logs: dict[str, Any]) -> None:
        if progress and (done % PROGRESS_EVERY == 0 or done == spec.epochs):
            loss = float(logs.get("loss", float("nan")))
            acc = float(logs.get("accuracy", float("nan")))
            progress(
                f"[{spec.name}] epoch {done:>3}/{spec.epochs}  loss {loss:.4f}  accuracy {acc:.3f}"
            )

    model, history = seeded_fit(
        spec,
        lambda: build_model(x_train.shape[1], spec),
        scaler.transform(x_train).astype(np.float32),
        np.asarray(y_train, dtype=np.float32).reshape(-1, 1),
        on_epoch=report,
    )
    return FittedModel(spec=spec, model=model, scaler=scaler, loss_history=history)


def fit_on_split(
    spec: VariantSpec, data: Split, *, progress: Progress | None = stderr_progress
) -> FittedModel:
    return fit_variant(spec, data.x_train, data.y_train, progress=progress)
