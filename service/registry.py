"""The model registry: every servable model folder, loaded into an onnxruntime session.

A folder is refused (one log line, the others still served) when its card is missing or
malformed, its ``model.onnx`` does not match the card's sha256, or the graph's input and
output do not match the card's ``features`` and ONNX names; and whatever else goes wrong
with one folder refuses that folder, never the start-up.

Reading a folder is confined: the folder must resolve (links followed) inside the model
directory; its card and graph must be regular files directly in it, not links, within
:class:`ReadLimits` (costaware.card.read_folder_file), and the graph must keep no tensor
data in external files (service.onnxproto). Nothing else is ever opened.

The registry is read on every request and changed only by :mod:`service.lifecycle`
(load, replace, unload while serving). A change replaces ``models`` with a new dict
instead of mutating it, so a reader, on the event loop or in a worker thread, always sees
one consistent set; a request holds the :class:`LoadedModel` it picked, so it finishes on
that version whatever is swapped in meanwhile.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from costaware.card import (
    CARD_FILENAME,
    MAX_CARD_BYTES,
    MAX_MODEL_BYTES,
    AnyCard,
    CardError,
    MulticlassCard,
    parse_card,
    read_folder_file,
)
from costaware.decision import snap_rounding
from service.errors import NotFoundError, NotReadyError
from service.onnxproto import MalformedGraphError, external_tensors

log = logging.getLogger(__name__)


class ModelRefusedError(Exception):
    """A model folder that cannot be served; the message names the folder and the reason."""


@dataclass(frozen=True)
class ReadLimits:
    """The most bytes a model folder's card and graph may hold
    (``COSTAWARE_MAX_CARD_BYTES``, ``COSTAWARE_MAX_MODEL_BYTES``)."""

    card_bytes: int = MAX_CARD_BYTES
    model_bytes: int = MAX_MODEL_BYTES


@dataclass(frozen=True)
class ModelFiles:
    """A model folder's card and graph, read once: what is validated is what is served
    (and, with several workers, what the other workers load; service.lifecycle)."""

    folder: Path
    card: AnyCard
    card_bytes: bytes
    onnx_bytes: bytes

    @property
    def sha256(self) -> str:
        return self.card.onnx.sha256

    @property
    def fingerprint(self) -> str:
        """Identifies the exact card and graph: a reload of unchanged files changes nothing."""
        card_digest = hashlib.sha256(self.card_bytes).hexdigest()
        return f"{card_digest[:16]}-{self.sha256[:16]}"


@dataclass(frozen=True)
class LoadedModel:
    card: AnyCard
    folder: Path
    session: ort.InferenceSession
    fingerprint: str = ""
    loaded_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.card.name

    @functools.cached_property
    def multiclass(self) -> bool:
        """A K-class model (graph output ``[N, K]`` probabilities, ``card.classes``)."""
        return isinstance(self.card, MulticlassCard)

    @property
    def n_features(self) -> int:
        return len(self.card.features)

    @functools.cached_property
    def calibrated(self) -> bool:
        """The card has a calibration map and the graph its calibrated output
        (``probability`` [N, 1] binary, ``probabilities`` [N, K] multiclass)."""
        return self.card.calibration is not None

    def score(self, x: np.ndarray) -> np.ndarray:
        """Positive-class scores (1-D float64) for raw feature rows ``x`` of shape [N, F]."""
        return np.asarray(self.raw_scores(x), dtype=np.float64)

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """The graph's raw output for ``x`` (float32): 1-D scores for a binary model,
        ``[N, K]`` class scores for a multiclass one (see :meth:`outputs`)."""
        return self.split(self.outputs(x))[0]

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """Every output the service reads, from one session call, float32 rounding just
        outside [0, 1] snapped to the bound (costaware.decision.snap_rounding), stacked
        so that rows stay rows (service.batching slices them): an uncalibrated model's raw
        output as :meth:`raw_scores` gives it; a calibrated one's raw and calibrated
        outputs side by side (``[N, 2]`` binary, ``[N, 2K]`` multiclass). :meth:`split`
        takes them apart."""
        batch = np.ascontiguousarray(x, dtype=np.float32)
        run, names, input_name = self._run
        found = [
            snap_rounding(out).reshape(len(batch), -1)
            for out in run(names, {input_name: batch}, None)
        ]
        if len(found) == 1:
            (out,) = found
            return out if self.multiclass else out.reshape(-1)
        return np.concatenate(found, axis=1)

    def split(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`outputs` (or rows of it) as (raw, calibrated): binary ``[N]`` and ``[N]``,
        multiclass ``[N, K]`` and ``[N, K]``; calibrated is None without a map."""
        if not self.calibrated:
            return outputs, None
        width = outputs.shape[1] // 2
        raw, calibrated = outputs[:, :width], outputs[:, width:]
        if self.multiclass:
            return raw, calibrated
        return raw.reshape(-1), calibrated.reshape(-1)

    @functools.cached_property
    def _run(self) -> tuple[Callable[..., list[np.ndarray]], list[str], str]:
        # onnxruntime's own session object when the wrapper exposes it: the wrapper's run
        # checks the feed's names and ownership on every call, which takes longer than the
        # graph does for one row; the names were checked once, at load (_check_signature).
        native = getattr(self.session, "_sess", None)
        run = native.run if native is not None else self.session.run
        names = [self.card.onnx.output_name]
        if self.card.calibration is not None:
            names.append(self.card.calibration.output_name)
        return run, names, self.card.onnx.input_name


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning worker threads burn a core waiting for work that, for these models,
    # never needs more than one thread; the CPU is better left to the other workers.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _check_signature(card: AnyCard, session: ort.InferenceSession, path: Path) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelRefusedError(f"{path}: graph has {len(inputs)} inputs, the contract is one")
    graph_input = inputs[0]
    if graph_input.name != card.onnx.input_name:
        raise ModelRefusedError(
            f"{path}: graph input is named {graph_input.name!r}, "
            f"the card says {card.onnx.input_name!r}"
        )
    if graph_input.type != "tensor(float)":
        raise ModelRefusedError(
            f"{path}: graph input is {graph_input.type}, expected tensor(float)"
        )
    shape = graph_input.shape
    width = shape[1] if len(shape) == 2 else None
    if len(shape) != 2 or width != len(card.features):
        raise ModelRefusedError(
            f"{path}: graph input shape {shape} does not match the card's "
            f"{len(card.features)} features (expected [N, {len(card.features)}])"
        )
    if card.onnx.output_name not in {output.name for output in outputs}:
        raise ModelRefusedError(
            f"{path}: graph has no output named {card.onnx.output_name!r} "
            f"(outputs: {[output.name for output in outputs]})"
        )
    if isinstance(card, MulticlassCard):
        # The multiclass contract: one probability per class, in the card's class order.
        (output,) = (o for o in outputs if o.name == card.onnx.output_name)
        k = len(card.classes)
        if len(output.shape) != 2 or output.shape[1] != k:
            raise ModelRefusedError(
                f"{path}: graph output {output.name!r} has shape {output.shape}; a multiclass "
                f"card with {k} classes needs [N, {k}]"
            )
    if card.calibration is not None:
        _check_calibrated_output(card, outputs, path)


def _check_calibrated_output(card: AnyCard, outputs: list[Any], path: Path) -> None:
    """A card with a calibration map names the graph output that applies it: present,
    float, ``[N, 1]`` (binary) or ``[N, K]`` (multiclass). Whether it computes the card's
    map is checked by the warm-up (service.lifecycle.warm_up)."""
    assert card.calibration is not None
    name = card.calibration.output_name
    found = [output for output in outputs if output.name == name]
    if not found:
        raise ModelRefusedError(
            f"{path}: the card has a {card.calibration.map.method} calibration map but the "
            f"graph has no output named {name!r} (outputs: {[o.name for o in outputs]})"
        )
    output = found[0]
    width = len(card.classes) if isinstance(card, MulticlassCard) else 1
    if output.type != "tensor(float)" or len(output.shape) != 2 or output.shape[1] != width:
        raise ModelRefusedError(
            f"{path}: graph output {name!r} is {output.type} of shape {output.shape}; the "
            f"card's calibration needs tensor(float) [N, {width}]"
        )


def read_model_files(
    folder: Path, limits: ReadLimits | None = None, inside: Path | None = None
) -> ModelFiles:
    """Read a folder's card and graph, checking the card, the graph's sha256 and that the
    graph is self-contained; with ``inside`` (the model directory), the folder must resolve
    into it. Raise :class:`ModelRefusedError` saying why not."""
    limits = limits or ReadLimits()
    # Read from where the folder resolved to, not through the link again.
    source = folder if inside is None else confine(folder, inside)
    path = source / CARD_FILENAME
    try:
        card_bytes = read_folder_file(source, CARD_FILENAME, limits.card_bytes, "model card")
        card = parse_card(card_bytes, path)
        what = "model file named by the card"
        onnx_bytes = read_folder_file(source, card.onnx.file, limits.model_bytes, what)
    except CardError as exc:
        raise ModelRefusedError(str(exc)) from None
    model_path = source / card.onnx.file
    actual = hashlib.sha256(onnx_bytes).hexdigest()
    if actual != card.onnx.sha256:
        raise ModelRefusedError(
            f"{model_path}: sha256 {actual[:12]}… does not match the card's "
            f"{card.onnx.sha256[:12]}…"
        )
    try:
        external = external_tensors(onnx_bytes)
    except MalformedGraphError as exc:
        raise ModelRefusedError(
            f"{model_path}: not an ONNX protobuf ({exc}), so onnxruntime cannot load it"
        ) from None
    if external:
        shown = ", ".join(repr(name[:80]) for name in external[:3])
        raise ModelRefusedError(
            f"{model_path}: {len(external)} tensors ({shown}) keep their data in external "
            "files; the service serves self-contained graphs only (save the graph without "
            "external data)"
        )
    return ModelFiles(folder=folder, card=card, card_bytes=card_bytes, onnx_bytes=onnx_bytes)


def confine(folder: Path, model_dir: Path) -> Path:
    """Where ``folder`` resolves to (links followed), refused when outside ``model_dir``;
    a link to a sibling folder (a version swapped in by renaming a link) is inside. The
    target of a refused link is not named: it may be anywhere on the host."""
    root = os.path.realpath(model_dir)
    target = os.path.realpath(folder)
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        raise ModelRefusedError(
            f"{folder}: the model folder is a link to a place outside the model directory"
        )
    return Path(target)


def build_model(files: ModelFiles, options: ort.SessionOptions) -> LoadedModel:
    """An onnxruntime session for checked files whose graph matches the card's contract."""
    model_path = files.folder / files.card.onnx.file
    try:
        session = ort.InferenceSession(
            files.onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad graph
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRefusedError(f"{model_path}: onnxruntime cannot load it ({message})") from exc
    _check_signature(files.card, session, model_path)
    return LoadedModel(
        card=files.card, folder=files.folder, session=session, fingerprint=files.fingerprint
    )


def load_model(
    folder: Path, options: ort.SessionOptions, limits: ReadLimits | None = None
) -> LoadedModel:
    """Load one model folder, or raise :class:`ModelRefusedError` saying why not."""
    return build_model(read_model_files(folder, limits), options)


def unexpected_refusal(folder: Path, exc: BaseException) -> str:
    """The reason a folder is refused for a failure no check foresaw (the traceback goes
    to the log, not to the answer)."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{folder}: cannot be loaded ({type(exc).__name__}{': ' + first if first else ''})"


def model_folders(model_dir: Path) -> list[Path]:
    """The candidate model folders: ``model_dir`` itself when it holds a card (SageMaker
    unpacks a single model there), else its visible subfolders."""
    if (model_dir / CARD_FILENAME).is_file():
        return [model_dir]
    return sorted(
        child for child in model_dir.iterdir() if child.is_dir() and not child.name.startswith(".")
    )


@dataclass
class ModelRegistry:
    """The loaded models by name, plus why each refused folder was refused."""

    model_dir: Path
    default_name: str
    models: dict[str, LoadedModel] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    limits: ReadLimits = field(default_factory=ReadLimits)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        default_name: str,
        options: ort.SessionOptions | None = None,
        accept: Callable[[ModelFiles, LoadedModel], None] | None = None,
        limits: ReadLimits | None = None,
    ) -> ModelRegistry:
        """Load every model folder under ``model_dir``; ``accept`` is called with each
        model's files and session before it is served (service.lifecycle warms it up
        there and keeps a copy for the other workers) and may refuse it."""
        registry = cls(model_dir=model_dir, default_name=default_name)
        registry.limits = limits or ReadLimits()
        if not model_dir.is_dir():
            registry.refused = {str(model_dir): "model directory does not exist"}
            log.error("model directory %s does not exist; no model is served", model_dir)
            return registry
        options = options or session_options()
        try:
            folders = model_folders(model_dir)
        except OSError as exc:
            registry.refused = {str(model_dir): f"model directory unreadable ({exc.strerror})"}
            log.error("model directory %s cannot be listed: %s", model_dir, exc)
            return registry
        for folder in folders:
            try:
                files = read_model_files(folder, registry.limits, model_dir)
                model = build_model(files, options)
                if accept is not None:
                    accept(files, model)
            except ModelRefusedError as exc:
                registry.refused = {**registry.refused, str(folder): str(exc)}
                log.warning("refused model folder %s: %s", folder, exc)
                continue
            except Exception as exc:  # one folder's surprise must not stop the others
                reason = unexpected_refusal(folder, exc)
                registry.refused = {**registry.refused, str(folder): reason}
                log.exception("refused model folder %s: %s", folder, reason)
                continue
            if model.name in registry.models:
                reason = f"{folder}: a model named {model.name!r} is already loaded"
                registry.refused = {**registry.refused, str(folder): reason}
                log.warning("refused model folder %s: %s", folder, reason)
                continue
            registry.models = {**registry.models, model.name: model}
            log.info("loaded model %s %s from %s", model.name, model.card.version, folder)
        if not registry.models:
            log.error("no loadable model under %s; the service is not ready", model_dir)
        elif default_name not in registry.models:
            log.warning(
                "default model %r is not loaded; requests must name one of %s",
                default_name,
                registry.names(),
            )
        return registry

    @property
    def ready(self) -> bool:
        return bool(self.models)

    def names(self) -> list[str]:
        return sorted(self.models)

    def loaded(self) -> list[LoadedModel]:
        """Every loaded model, by name, from one consistent set."""
        models = self.models
        return [models[name] for name in sorted(models)]

    def install(self, model: LoadedModel) -> LoadedModel | None:
        """Serve ``model`` under its name from the next request on; the model it replaces."""
        previous = self.models.get(model.name)
        self.models = {**self.models, model.name: model}
        return previous

    def remove(self, name: str) -> LoadedModel | None:
        """Stop serving ``name``; requests that already hold it finish on it."""
        models = dict(self.models)
        removed = models.pop(name, None)
        self.models = models
        return removed

    def get(self, name: str | None = None) -> LoadedModel:
        """The named model, or the default one; a single loaded model is everyone's default."""
        if not self.models:
            raise NotReadyError(f"no model is loaded from {self.model_dir}")
        if name is None:
            if self.default_name in self.models:
                return self.models[self.default_name]
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise NotFoundError(
                f"the default model {self.default_name!r} is not loaded; name one of {self.names()}"
            )
        try:
            return self.models[name]
        except KeyError:
            raise NotFoundError(f"unknown model {name!r}; loaded models: {self.names()}") from None


def registry_of(state: Any) -> ModelRegistry:
    """The app's registry (``app.state.registry``), or NotReadyError while it starts."""
    registry = getattr(state, "registry", None)
    if registry is None:
        raise NotReadyError("the model registry has not been built (the app is still starting)")
    return registry
