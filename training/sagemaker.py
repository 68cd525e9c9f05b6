"""The SageMaker training-container contract: the ``train`` executable.

SageMaker runs ``train`` with this layout under ``<base>`` (``/opt/ml``, or
``$COSTAWARE_SAGEMAKER_BASE`` for tests and local rehearsal):

- ``input/config/hyperparameters.json``: a JSON object whose values are all
  strings: ``loss_function_type`` (``builtin`` | ``custom``, default ``builtin``),
  ``fn_cost`` and ``fp_cost`` (required for ``custom``), and optional ``epochs``
  (default 50), ``seed`` (default 1; also the hold-out split's seed) and ``name``
  (default ``builtin`` or ``custom-<fn>to<fp>``), ``replace`` (``true`` | ``false``,
  default ``false``: see below). Keys starting with
  ``sagemaker_`` are SageMaker's own and ignored; any other key is an error.
- ``input/data/train/``: every non-hidden file is a CSV with the label (0/1) in
  the first column and no header; files are read in name order and concatenated.

It writes ``model/<name>/model.onnx`` and ``model/<name>/model-card.json``, one
folder per model, which is the layout the service's registry loads (every model
folder under its model dir), so the unpacked ``model.tar.gz`` is servable as is;
and the HTML report under ``output/data/report/`` (SageMaker uploads
``output/data``). SageMaker holds out no test split, so 25% of the rows are held
out (seeded) for the card's metrics; the model is fitted on the other 75%.

SageMaker hands the job an empty ``model/``, so on SageMaker the folder never exists. Run
locally (``COSTAWARE_SAGEMAKER_BASE``, the compose ``trainer`` whose ``model/`` is the
service's models volume), ``model/<name>/`` may already hold a model: the job refuses it,
before reading the data, unless ``replace`` is ``true``.

On failure it writes the reason to ``output/failure`` (which SageMaker shows as
the job's failure reason) and exits 1 (2 for bad input or hyperparameters).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from costaware.tabular import TabularError
from training.data import DEFAULT_TEST_SIZE
from training.export import ExportError
from training.fit import stderr_progress
from training.options import OptionError, refuse_existing_models
from training.variants import DEFAULT_EPOCHS, DEFAULT_SEED, VariantError, VariantSpec

BASE_ENV = "COSTAWARE_SAGEMAKER_BASE"
DEFAULT_BASE = Path("/opt/ml")
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
_KNOWN = {"loss_function_type", "fn_cost", "fp_cost", "epochs", "seed", "name", "replace"}
_FLAGS = {"true": True, "false": False}


class HyperparameterError(ValueError):
    """A hyperparameter that is missing, unknown or not of the right form."""


@dataclass(frozen=True)
class Layout:
    base: Path

    @property
    def hyperparameters(self) -> Path:
        return self.base / "input" / "config" / "hyperparameters.json"

    @property
    def train_channel(self) -> Path:
        return self.base / "input" / "data" / "train"

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def report_dir(self) -> Path:
        return self.base / "output" / "data" / "report"

    @property
    def failure(self) -> Path:
        return self.base / "output" / "failure"


def base_dir() -> Path:
    return Path(os.environ.get(BASE_ENV) or DEFAULT_BASE)


def _number(raw: Mapping[str, object], key: str, kind: type) -> int | float | None:
    if key not in raw:
        return None
    value = raw[key]
    try:
        return kind(str(value).strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise HyperparameterError(f"hyperparameter {key}: {value!r} is not {what}") from None


def variant_from_hyperparameters(raw: object) -> VariantSpec:
    """The variant the hyperparameters describe (values are strings, as SageMaker writes them)."""
    if not isinstance(raw, dict):
        raise HyperparameterError("hyperparameters.json must hold a JSON object")
    unknown = sorted(k for k in raw if k not in _KNOWN and not str(k).startswith("sagemaker_"))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter {unknown[0]!r} (known: {', '.join(sorted(_KNOWN))})"
        )
    loss = str(raw.get("loss_function_type", "builtin")).strip()
    if loss not in ("builtin", "custom"):
        raise HyperparameterError(
            f"hyperparameter loss_function_type: {loss!r} must be 'builtin' or 'custom'"
        )
    fn_cost = _number(raw, "fn_cost", float)
    fp_cost = _number(raw, "fp_cost", float)
    if loss == "custom" and (fn_cost is None or fp_cost is None):
        missing = "fn_cost" if fn_cost is None else "fp_cost"
        raise HyperparameterError(
            f"hyperparameter {missing} is required with loss_function_type custom"
        )
    epochs = _number(raw, "epochs", int)
    seed = _number(raw, "seed", int)
    default_name = f"custom-{fn_cost:g}to{fp_cost:g}" if loss == "custom" else "builtin"
    try:
        return VariantSpec(
            name=str(raw.get("name", default_name)).strip(),
            loss=loss,  # type: ignore[arg-type]  # checked above
            fn_cost=fn_cost if loss == "custom" else 1.0,  # type: ignore[arg-type]
            fp_cost=fp_cost if loss == "custom" else 1.0,  # type: ignore[arg-type]
            epochs=DEFAULT_EPOCHS if epochs is None else int(epochs),
            seed=DEFAULT_SEED if seed is None else int(seed),
            description=f"trained by the SageMaker `train` entry point (loss {loss})",
        )
    except VariantError as exc:
        raise HyperparameterError(f"hyperparameters: {exc}") from None


def replace_from_hyperparameters(raw: Mapping[str, object]) -> bool:
    """The ``replace`` hyperparameter: may the job overwrite an existing model folder?"""
    value = str(raw.get("replace", "false")).strip().lower()
    if value not in _FLAGS:
        raise HyperparameterError(
            f"hyperparameter replace: {raw['replace']!r} must be 'true' or 'false'"
        )
    return _FLAGS[value]


def load_hyperparameters(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HyperparameterError(f"{path}: no hyperparameters file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HyperparameterError(f"{path}: unreadable ({exc})") from None


def training_files(channel: Path) -> list[Path]:
    if not channel.is_dir():
        raise HyperparameterError(f"{channel}: training channel 'train' not found")
    files = sorted(p for p in channel.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise HyperparameterError(f"{channel}: no files in the training channel")
    return files


def train(layout: Layout) -> Path:
    """Run the contract; return the model folder written."""
    from training.pipeline import load_data, make_split, train_variant
    from training.report import write_report

    raw = load_hyperparameters(layout.hyperparameters)
    spec = variant_from_hyperparameters(raw)
    assert isinstance(raw, dict)  # variant_from_hyperparameters refuses anything else
    refuse_existing_models(
        layout.model_dir,
        [spec.name],
        replace=replace_from_hyperparameters(raw),
        how="set the hyperparameter replace to 'true'",
    )
    dataset = load_data(training_files(layout.train_channel), label=None)
    data = make_split(dataset, test_size=DEFAULT_TEST_SIZE, seed=spec.seed)
    result = train_variant(spec, dataset, data, layout.model_dir)
    write_report([result], data, layout.report_dir)
    stderr_progress(
        f"[{spec.name}] held-out accuracy {result.export.card.metrics.accuracy:.3f}, "
        f"AUC {result.export.card.metrics.auc:.4f}"
    )
    return result.export.folder


def _fail(layout: Layout, reason: str, status: int) -> int:
    print(f"train: error: {reason}", file=sys.stderr)
    try:
        layout.failure.parent.mkdir(parents=True, exist_ok=True)
        layout.failure.write_text(reason + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"train: could not write {layout.failure}: {exc}", file=sys.stderr)
    return status


def main() -> int:
    """Entry point of the ``train`` executable; returns the exit status."""
    layout = Layout(base_dir())
    try:
        folder = train(layout)
    except (HyperparameterError, TabularError, OptionError) as exc:
        return _fail(layout, str(exc), EXIT_BAD_INPUT)
    except (ExportError, OSError) as exc:
        return _fail(layout, str(exc), EXIT_FAILED)
    except Exception as exc:  # the job must always leave a failure reason behind
        import traceback

        traceback.print_exc()
        return _fail(layout, f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED)
    stderr_progress(f"model written to {folder}")
    return 0
