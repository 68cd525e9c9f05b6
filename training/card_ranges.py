"""Add each feature's training range to existing model cards, without retraining.

    python -m training.card_ranges [models/...]     (default: every folder under models/)

For a card written before cards recorded ``feature_ranges``. The training split is rebuilt
from what the card records (the reference data, its sha256, test size and split seed) and
checked against it (data sha256 and row counts) before anything is written; the ranges are
what ``training.export`` computes for a new model, from the same split. ``model.onnx`` is
not touched, so the card's sha256 still matches it (checked after writing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from costaware.card import (
    CARD_FILENAME,
    ModelCard,
    feature_ranges,
    read_card,
    verify_model_file,
    write_card,
)
from training.data import REFERENCE_SOURCE, load_reference, split


class RangesError(RuntimeError):
    """The card's training data cannot be rebuilt exactly; nothing is written."""


def with_ranges(card: ModelCard) -> ModelCard:
    """``card`` with ``feature_ranges`` computed from its own training split."""
    data = card.training.data
    if data.source != REFERENCE_SOURCE:
        raise RangesError(
            f"{card.name}: trained on {data.source!r}; only the reference data can be "
            "rebuilt here (retrain to record the ranges)"
        )
    dataset = load_reference()
    if dataset.sha256 != data.sha256:
        raise RangesError(f"{card.name}: the reference data's sha256 differs from the card's")
    if list(dataset.feature_names) != card.features:
        raise RangesError(f"{card.name}: the reference data's features differ from the card's")
    rows = split(dataset, test_size=data.test_size, seed=data.split_seed)
    if len(rows.y_test) != data.n_test or list(rows.y_test) != list(card.held_out.labels):
        raise RangesError(f"{card.name}: the rebuilt held-out split differs from the card's")
    ranges = feature_ranges(rows.x_train, card.features)
    return ModelCard.model_validate(card.model_dump() | {"feature_ranges": ranges})


def migrate(folder: Path) -> ModelCard:
    card = read_card(folder)
    verify_model_file(folder, card)
    updated = with_ranges(card)
    write_card(folder, updated)
    verify_model_file(folder, read_card(folder))
    return updated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path)
    args = parser.parse_args(argv)
    folders = args.folders or sorted(
        path.parent for path in Path("models").glob(f"*/{CARD_FILENAME}")
    )
    for folder in folders:
        try:
            card = migrate(folder)
        except RangesError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{folder}: {len(card.feature_ranges or [])} feature ranges recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
