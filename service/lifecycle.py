"""Loading, replacing and unloading models while serving.

A load reads ``<model dir>/<name>/`` once (card and graph bytes), checks it as start-up
does (card, sha256, graph signature), warms the new session up with one inference, and
only then swaps it into the registry: one assignment on the event loop, so a request
sees the old version or the new one, never a mix, and a request that already picked the
old version finishes on it. A failed load changes nothing that is served. Loads and
unloads of one name wait for each other.

Several workers (``COSTAWARE_WORKERS`` > 1) share a lifecycle directory (``serve`` makes
a temporary one): the worker that carries out a load or unload writes a copy of the
exact files it validated (``snapshots/<fingerprint>/``) and a new generation into
``generation.json``, both before it answers. Every worker reads ``generation.json`` every
:data:`FOLLOW_SECONDS` and applies newer entries from the copies, so all workers serve
the same bytes within about a second of the answer, whatever happens to the model folder
meanwhile. The model directory itself is never written (it is read-only in the container
and on SageMaker). A worker that starts late (or is restarted) serves the current
generation, not whatever the folder holds by then.

Watching (``COSTAWARE_MODEL_POLL_SECONDS`` > 0) scans the model folders' files (name,
size, mtime, inode) and applies a folder that is new or changed, through the same load,
only once two scans in a row saw it the same; a folder gone from two scans in a row is
unloaded (the default model stays). A folder that fails is not retried until it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from costaware.calibration import GRAPH_MAP_TOLERANCE, apply_map
from costaware.card import CARD_FILENAME
from costaware.decision import MODEL_NAME_RE, all_probabilities
from service.errors import (
    ConflictError,
    InvalidInputError,
    ModelLoadError,
    NotFoundError,
    ServiceError,
)
from service.registry import (
    LoadedModel,
    ModelFiles,
    ModelRefusedError,
    ModelRegistry,
    ReadLimits,
    build_model,
    model_folders,
    read_model_files,
    unexpected_refusal,
)

log = logging.getLogger(__name__)

FOLLOW_SECONDS = 0.5
GENERATION_FILE = "generation.json"


def warm_up(model: LoadedModel) -> None:
    """One inference before any request depends on the model: the graph must run and give,
    for one row, one score (binary) or one probability per class (multiclass).

    With training ranges in the card the row is each feature's midpoint between its 0.5th
    and 99.5th training percentiles, and the answer must also be decidable (finite, in
    [0, 1]): a graph that gives no probability in the middle of its own training data is
    broken, not surprised. Without ranges the row is zeros, which may lie far outside the
    training data, where a legitimate graph can give anything; its values are not judged
    (a score that is not a finite number in [0, 1] is refused on the request that meets
    it, ``non_finite_score``).

    A calibrated model is also checked for its map (:func:`check_calibration_map`)."""
    ranges = model.card.feature_ranges
    if ranges:
        row = np.array([[(item.p0_5 + item.p99_5) / 2 for item in ranges]], dtype=np.float32)
        where = "a row in the middle of its training ranges"
    else:
        row = np.zeros((1, model.n_features), dtype=np.float32)
        where = "a row of zeros"
    try:
        scores = model.raw_scores(row)
    except Exception as exc:  # onnxruntime raises several unrelated types
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRefusedError(
            f"{model.folder}: the warm-up inference failed ({message})"
        ) from exc
    if model.multiclass:
        expected: tuple[int, ...] = (1, len(model.card.classes))
        contract = f"one probability per class ({expected[1]}) per row"
    else:
        expected, contract = (1,), "one score per row"
    if scores.shape != expected:
        raise ModelRefusedError(
            f"{model.folder}: the warm-up inference gave {scores.size} values for one row; "
            f"the contract is {contract}"
        )
    if ranges and not all_probabilities(scores):
        shown = ", ".join(repr(float(value)) for value in scores.reshape(-1)[:5])
        raise ModelRefusedError(
            f"{model.folder}: the warm-up inference on {where} gave {shown}, not finite "
            "numbers in [0, 1]; no decision could be made from this model"
        )
    if model.calibrated:
        check_calibration_map(model, row)


# Where, between each feature's 0.5th and 99.5th training percentiles, the calibration
# check's rows lie (beside the warm-up row): the map is compared over the scores the
# model gives in the range it was trained on, not only in its middle.
CALIBRATION_ROW_FRACTIONS = (0.0, 0.1, 0.25, 0.75, 0.9, 1.0)


def check_calibration_map(model: LoadedModel, warm_up_row: np.ndarray) -> None:
    """The graph's calibrated output must be the card's map applied to the graph's own raw
    output (``costaware.calibration.apply_map``, within ``GRAPH_MAP_TOLERANCE``) on the
    warm-up row and rows spread across the training ranges; a graph whose map disagrees
    with its card would state probabilities the card does not describe, so it is refused."""
    calibration = model.card.calibration
    assert calibration is not None
    rows = [warm_up_row]
    ranges = model.card.feature_ranges
    if ranges:
        low = np.array([item.p0_5 for item in ranges])
        high = np.array([item.p99_5 for item in ranges])
        rows += [(low + f * (high - low))[None, :] for f in CALIBRATION_ROW_FRACTIONS]
    x = np.concatenate(rows).astype(np.float32)
    try:
        raw, calibrated = model.split(model.outputs(x))
    except Exception as exc:  # onnxruntime raises several unrelated types
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelRefusedError(
            f"{model.folder}: the calibration check's inference failed ({message})"
        ) from exc
    assert calibrated is not None
    expected = apply_map(calibration.map, raw.astype(np.float64))
    # Rows where the raw output is not a probability are outside what a map is defined on.
    usable = np.isfinite(raw).all(axis=-1) if raw.ndim == 2 else np.isfinite(raw)
    gap = np.abs(calibrated.astype(np.float64) - expected)
    gap = np.where(np.isnan(gap), np.inf, gap)[usable]
    if gap.size and gap.max() > GRAPH_MAP_TOLERANCE:
        worst = np.unravel_index(int(np.argmax(gap)), gap.shape)
        got = calibrated[usable][worst]
        want = expected[usable][worst]
        raise ModelRefusedError(
            f"{model.folder}: the graph's {calibration.output_name!r} output disagrees with "
            f"the card's {calibration.map.method} calibration map: {float(got)!r} where the "
            f"map gives {float(want)!r} for the graph's own {model.card.onnx.output_name!r} "
            f"(off by {float(gap.max()):.3g}, tolerance {GRAPH_MAP_TOLERANCE:g}); the card "
            "does not describe this graph"
        )


def folder_state(folder: Path) -> tuple[Any, ...]:
    """What the watcher compares: the folder's identity and each file's name, size,
    modification time and inode (a rename into place changes the inode)."""
    stat = folder.stat()
    files = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file():
                info = entry.stat()
                files.append((entry.name, info.st_size, info.st_mtime_ns, info.st_ino))
    return (stat.st_ino, tuple(sorted(files)))


def scan_model_dir(model_dir: Path) -> dict[str, tuple[Any, ...]]:
    """Folder name -> :func:`folder_state` for every visible model folder."""
    if not model_dir.is_dir() or (model_dir / CARD_FILENAME).is_file():
        return {}
    scan = {}
    for folder in model_folders(model_dir):
        with contextlib.suppress(OSError):  # removed or renamed while we looked
            scan[folder.name] = folder_state(folder)
    return scan


@dataclass(frozen=True)
class LoadOutcome:
    model: LoadedModel
    previous: LoadedModel | None
    changed: bool
    generation: int
    seconds: float


class SharedGenerations:
    """The lifecycle directory several workers share: ``generation.json`` (the models every
    worker should serve), ``snapshots/`` (the validated files they load them from) and
    ``locks/`` (one ``flock`` per model name, and one for the generation file)."""

    def __init__(self, root: Path, limits: ReadLimits | None = None) -> None:
        self.root = root
        self.limits = limits or ReadLimits()
        self.snapshots = root / "snapshots"
        self.locks = root / "locks"
        self.snapshots.mkdir(parents=True, exist_ok=True)
        self.locks.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self, what: str) -> Iterator[None]:
        """An exclusive lock across processes; ``what`` is a model name or ``.generation``."""
        with open(self.locks / f"{what}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / GENERATION_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def entry(self, name: str) -> dict[str, Any] | None:
        """What the latest generation serves under ``name``."""
        state = self.read()
        return state["models"].get(name) if state else None

    def _write(self, state: dict[str, Any]) -> None:
        temporary = self.root / f".{GENERATION_FILE}.{os.getpid()}"
        temporary.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temporary, self.root / GENERATION_FILE)  # readers see old or new, whole

    def _snapshot(self, files: ModelFiles) -> str:
        name = files.fingerprint
        target = self.snapshots / name
        if not target.is_dir():
            staging = self.snapshots / f".{name}.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            graph = staging / files.card.onnx.file
            graph.parent.mkdir(parents=True, exist_ok=True)
            graph.write_bytes(files.onnx_bytes)
            (staging / CARD_FILENAME).write_bytes(files.card_bytes)
            os.rename(staging, target)
        return name

    def _entry(self, files: ModelFiles, generation: int) -> dict[str, Any]:
        return {
            "fingerprint": files.fingerprint,
            "version": files.card.version,
            "sha256": files.sha256,
            "folder": str(files.folder),
            "snapshot": self._snapshot(files),
            "generation": generation,
        }

    def initialise(self, registry: ModelRegistry, files: dict[str, ModelFiles]) -> int:
        """Generation 1: what the first worker to start loaded. Call under the lock."""
        state = {
            "generation": 1,
            "models": {name: self._entry(f, 1) for name, f in files.items()},
            "refused": registry.refused,
        }
        self._write(state)
        return 1

    def publish(self, name: str, files: ModelFiles | None, refused: dict[str, str]) -> int:
        """A new generation with ``name`` served from ``files`` (None: unloaded)."""
        with self.locked(".generation"):
            state = self.read() or {"generation": 0, "models": {}, "refused": {}}
            previous = state["models"]
            generation = state["generation"] + 1
            models = dict(previous)
            if files is None:
                models.pop(name, None)
            else:
                models[name] = self._entry(files, generation)
            self._write({"generation": generation, "models": models, "refused": refused})
            self._collect({entry["snapshot"] for entry in (*models.values(), *previous.values())})
            return generation

    def _collect(self, keep: set[str]) -> None:
        """Drop snapshots neither this generation nor the one before serves."""
        for child in self.snapshots.iterdir():
            if child.name not in keep and not child.name.startswith("."):
                shutil.rmtree(child, ignore_errors=True)

    def files(self, entry: dict[str, Any]) -> ModelFiles:
        """The published files of an entry, checked again (card, sha256) as they are read."""
        files = read_model_files(self.snapshots / entry["snapshot"], self.limits)
        return dataclasses.replace(files, folder=Path(entry["folder"]))


class ModelLifecycle:
    """Carries out loads and unloads on the app's registry; see the module docstring."""

    def __init__(
        self,
        registry: ModelRegistry,
        options: ort.SessionOptions,
        shared: SharedGenerations | None = None,
        poll_seconds: float = 0,
        generation: int = 0,
    ) -> None:
        self.registry = registry
        self.options = options
        self.shared = shared
        self.poll_seconds = poll_seconds
        self.generation = generation
        # name -> the generation its served model was published at (several workers).
        self.installed: dict[str, int] = {name: generation for name in registry.models}
        self.loading: set[str] = set()
        self.last_error: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._followed = generation

    # -- start-up -------------------------------------------------------------------

    @classmethod
    def start_up(
        cls,
        model_dir: Path,
        default_name: str,
        options: ort.SessionOptions,
        lifecycle_dir: Path | None = None,
        poll_seconds: float = 0,
        limits: ReadLimits | None = None,
    ) -> ModelLifecycle:
        """Load the models: from ``model_dir``, or, when other workers already did, the
        generation they serve."""
        if lifecycle_dir is None:
            registry = ModelRegistry.load(model_dir, default_name, options, _warm, limits)
            return cls(registry, options, poll_seconds=poll_seconds)
        shared = SharedGenerations(lifecycle_dir, limits)
        with shared.locked(".generation"):
            state = shared.read()
            if state is None:
                accepted: dict[str, ModelFiles] = {}

                def keep(files: ModelFiles, model: LoadedModel) -> None:
                    _warm(files, model)
                    accepted.setdefault(model.name, files)

                registry = ModelRegistry.load(model_dir, default_name, options, keep, limits)
                files = {name: accepted[name] for name in registry.models}
                generation = shared.initialise(registry, files)
            else:
                registry = ModelRegistry(
                    model_dir=model_dir, default_name=default_name, limits=shared.limits
                )
                for name, entry in state["models"].items():
                    try:
                        registry.install(_build(shared.files(entry), options))
                    except Exception as exc:  # only if the copy was damaged
                        log.error("cannot serve %s as the other workers do: %s", name, exc)
                registry.refused = dict(state["refused"])
                generation = state["generation"]
                log.info("serving generation %d: %s", generation, registry.names())
        lifecycle = cls(registry, options, shared, poll_seconds, generation)
        if state is not None:
            lifecycle.installed = {
                name: entry["generation"] for name, entry in state["models"].items()
            }
        return lifecycle

    async def start(self) -> None:
        """Start following the other workers and watching the model directory."""
        if self.shared is not None:
            self._tasks.append(asyncio.create_task(self._follow(), name="follow-generations"))
        if self.poll_seconds > 0:
            self._seen = await asyncio.to_thread(scan_model_dir, self.registry.model_dir)
            self._tasks.append(asyncio.create_task(self._watch(), name="watch-model-dir"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- load and unload --------------------------------------------------------------

    def folder_for(self, name: str) -> Path:
        """``<model dir>/<name>/`` (or the model directory itself when it is one model's
        folder, as SageMaker unpacks a single model), never a path from the client: a
        model name has no separator and no leading dot, so it only names a child."""
        if not MODEL_NAME_RE.match(name):
            raise InvalidInputError(
                f"path.name: {name!r} is not a model name (letters, digits, '.', '_', '-'; "
                "up to 64, starting with a letter or digit)"
            )
        model_dir = self.registry.model_dir
        if (model_dir / CARD_FILENAME).is_file():
            return model_dir
        folder = model_dir / name
        if not folder.is_dir():
            raise NotFoundError(f"no model folder {name!r} in the model directory {model_dir}")
        return folder

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def load(self, name: str) -> LoadOutcome:
        """Load or reload ``name`` from its folder; raise a ServiceError saying why not,
        with whatever was served still served."""
        folder = self.folder_for(name)
        if self.shared is not None:
            await self.follow_once()  # start from what the other workers serve
        async with self._lock(name):
            self.loading.add(name)
            started = time.perf_counter()
            try:
                try:
                    model, generation = await asyncio.to_thread(self._prepare, name, folder)
                except ModelRefusedError as exc:
                    self._failed(name, folder, str(exc))
                    raise ModelLoadError(str(exc)) from None
                except ServiceError as exc:
                    self._failed(name, folder, exc.detail)
                    raise
                except Exception as exc:  # a surprise refuses this load, nothing else
                    reason = unexpected_refusal(folder, exc)
                    log.exception("model %s: %s", name, reason)
                    self._failed(name, folder, reason)
                    raise ModelLoadError(reason) from None
            finally:
                self.loading.discard(name)
            current = self.registry.models.get(name)
            changed = current is None or current.fingerprint != model.fingerprint
            if changed:
                previous = self.registry.install(model)
                self._installed(name, generation or self.generation + 1)
                log.info(
                    "model %s: now serving version %s (was %s)",
                    name,
                    model.card.version,
                    previous.card.version if previous else "not loaded",
                )
            else:
                previous = current
                model = current
            self.last_error.pop(name, None)
            self.registry.refused = {
                key: reason for key, reason in self.registry.refused.items() if key != str(folder)
            }
            return LoadOutcome(
                model=model,
                previous=previous,
                changed=changed,
                generation=self.generation,
                seconds=time.perf_counter() - started,
            )

    def _prepare(self, name: str, folder: Path) -> tuple[LoadedModel, int | None]:
        """In a worker thread: read, check, build and warm up; with several workers,
        publish. Returns the model and the generation it was published at (None with one
        worker: the event loop numbers the change when it makes it)."""
        with self.shared.locked(name) if self.shared else contextlib.nullcontext():
            files = read_model_files(folder, self.registry.limits, self.registry.model_dir)
            if files.card.name != name:
                raise ModelRefusedError(
                    f"{folder / CARD_FILENAME}: the card names the model "
                    f"{files.card.name!r}, not {name!r}"
                )
            current = self.registry.models.get(name)
            # What serves this name now: with several workers the latest published
            # entry (another worker's load may not have reached this one yet).
            served = _served(current)
            entry = None
            if self.shared is not None:
                entry = self.shared.entry(name)
                served = (
                    (entry["fingerprint"], entry["version"], entry["sha256"]) if entry else None
                )
            if served is not None and served[0] == files.fingerprint:
                if current is not None and current.fingerprint == files.fingerprint:
                    return current, None
                assert entry is not None  # only with several workers can the two differ
                return _build(files, self.options), entry["generation"]
            model = _build(files, self.options)
            if served is not None and served[1] == files.card.version and served[2] != files.sha256:
                raise ConflictError(
                    f"{folder}: version {files.card.version!r} is already served with a "
                    f"different graph (sha256 {served[2][:12]}…); give the new graph its "
                    "own version in the card, so that answers say which one made them"
                )
            if self.shared is None:
                return model, None
            refused = {k: v for k, v in self.registry.refused.items() if k != str(folder)}
            return model, self.shared.publish(name, files, refused)

    async def unload(self, name: str) -> LoadedModel:
        if not MODEL_NAME_RE.match(name):
            raise NotFoundError(f"unknown model {name!r}; loaded models: {self.registry.names()}")
        if name == self.registry.default_name:
            raise ConflictError(
                f"{name!r} is the default model (COSTAWARE_DEFAULT_MODEL) and cannot be "
                "unloaded; load a new version of it instead"
            )
        if self.shared is not None:
            await self.follow_once()
        async with self._lock(name):
            model = self.registry.models.get(name)
            if model is None:
                raise NotFoundError(
                    f"unknown model {name!r}; loaded models: {self.registry.names()}"
                )
            if len(self.registry.models) == 1:
                raise ConflictError(
                    f"{name!r} is the only model loaded; unloading it would leave nothing to serve"
                )
            generation = self.generation + 1
            if self.shared is not None:
                generation = await asyncio.to_thread(self._publish_unload, name)
            self.registry.remove(name)
            self._installed(name, generation, removed=True)
            log.info("model %s: unloaded (version %s)", name, model.card.version)
            return model

    def _publish_unload(self, name: str) -> int:
        assert self.shared is not None
        with self.shared.locked(name):
            return self.shared.publish(name, None, self.registry.refused)

    def _installed(self, name: str, generation: int, removed: bool = False) -> None:
        self.generation = max(self.generation, generation)
        if removed:
            self.installed.pop(name, None)
        else:
            self.installed[name] = generation

    def _failed(self, name: str, folder: Path, reason: str) -> None:
        log.warning(
            "model %s: load refused, still serving %s: %s", name, self._serving(name), reason
        )
        self.last_error[name] = (time.time(), reason)
        if name not in self.registry.models:
            self.registry.refused = {**self.registry.refused, str(folder): reason}

    def _serving(self, name: str) -> str:
        model = self.registry.models.get(name)
        return f"version {model.card.version}" if model else "nothing under that name"

    # -- several workers ----------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                await self.follow_once()
            except Exception:  # keep following; the next turn retries
                log.exception("could not apply the other workers' model changes")

    async def follow_once(self) -> None:
        """Apply every entry of ``generation.json`` newer than what this worker serves."""
        assert self.shared is not None
        state = self.shared.read()
        # Compared with what this loop last applied, not with self.generation: this
        # worker's own load may have published a later generation than another's change
        # it has not applied yet.
        if state is None or state["generation"] == self._followed:
            return
        for name, entry in state["models"].items():
            if entry["generation"] <= self.installed.get(name, 0):
                continue
            async with self._lock(name):
                if entry["generation"] <= self.installed.get(name, 0):
                    continue  # this worker's own load got there first
                current = self.registry.models.get(name)
                if current is None or current.fingerprint != entry["fingerprint"]:
                    files = await asyncio.to_thread(self.shared.files, entry)
                    model = await asyncio.to_thread(_build, files, self.options)
                    self.registry.install(model)
                    log.info(
                        "model %s: now serving version %s (from another worker)",
                        name,
                        model.card.version,
                    )
                self.installed[name] = entry["generation"]
        for name in set(self.registry.models) - set(state["models"]):
            async with self._lock(name):
                if (
                    name not in state["models"]
                    and self.installed.get(name, 0) < state["generation"]
                ):
                    self.registry.remove(name)
                    self.installed.pop(name, None)
                    log.info("model %s: unloaded (by another worker)", name)
        self.registry.refused = dict(state["refused"])
        self.generation = max(self.generation, state["generation"])
        self._followed = state["generation"]

    # -- watching -----------------------------------------------------------------------

    async def _watch(self) -> None:
        previous = dict(self._seen)
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                scan = await asyncio.to_thread(scan_model_dir, self.registry.model_dir)
                await self.apply_scan(previous, scan)
                previous = scan
            except Exception:
                log.exception("watching %s failed; trying again", self.registry.model_dir)

    async def apply_scan(
        self, previous: dict[str, tuple[Any, ...]], scan: dict[str, tuple[Any, ...]]
    ) -> None:
        """Load folders new or changed since the last attempt and the same in two scans
        in a row; unload those missing from two scans in a row."""
        for name, state in scan.items():
            if previous.get(name) != state or self._seen.get(name) == state:
                continue  # still changing, or already applied
            self._seen[name] = state
            try:
                outcome = await self.load(name)
            except ServiceError as exc:
                log.warning("watching: %s not applied: %s", name, exc.detail)
            else:
                if outcome.changed:
                    log.info("watching: applied %s version %s", name, outcome.model.card.version)
        for name in set(self._seen) - set(scan) - set(previous):
            del self._seen[name]
            if name not in self.registry.models:
                continue
            try:
                await self.unload(name)
            except ServiceError as exc:
                log.warning("watching: folder %s is gone but the model stays: %s", name, exc.detail)

    # -- what GET /models shows -------------------------------------------------------

    def describe(self, model: LoadedModel) -> dict[str, Any]:
        error = self.last_error.get(model.name)
        return {
            "state": "loading" if model.name in self.loading else "ready",
            "sha256": model.card.onnx.sha256,
            "loaded_at": _iso(model.loaded_at),
            "last_error": {"at": _iso(error[0]), "reason": error[1]} if error else None,
        }


def _served(model: LoadedModel | None) -> tuple[str, str, str] | None:
    if model is None:
        return None
    return model.fingerprint, model.card.version, model.card.onnx.sha256


def _warm(files: ModelFiles, model: LoadedModel) -> None:
    warm_up(model)


def _build(files: ModelFiles, options: ort.SessionOptions) -> LoadedModel:
    model = build_model(files, options)
    warm_up(model)
    return model


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
