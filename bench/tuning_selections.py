"""Score ways of picking the tuning winner on saved bench runs (``bench/tuning.py --save``).

Every selection below picks one (loss setting, threshold rule) pair per split from the
cross-validated values alone; the saved held-out value of that pair (the setting refitted
on the whole training split, the rule applied as ``training.tuning.fit_winner`` applies it)
is compared with ``medical`` at 0.5. This is how the ``elkan`` selection was chosen: on the
saved split seeds 2001-2020, before split seeds 3001-3020 were looked at.

Run: .venv/bin/python bench/tuning_selections.py RUN.json [RUN.json ...]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

Pair = dict
ANCHOR = ("builtin", "t*")  # cross-entropy at Elkan's t*: the textbook decision


def cv_mean(pair: Pair) -> float:
    return float(np.mean(pair["cv_values"]))


def cv_se(pair: Pair) -> float:
    values = np.asarray(pair["cv_values"])
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def is_elkan(pair: Pair) -> bool:
    return pair["rule"].startswith("t*")


def best(pairs: list[Pair]) -> Pair:
    return max(pairs, key=cv_mean)  # max keeps the first of equals, as the library does


def anchor(pairs: list[Pair]) -> Pair:
    return next(p for p in pairs if p["setting"] == ANCHOR[0] and is_elkan(p))


def one_se_anchor(pairs: list[Pair]) -> Pair:
    """The anchor unless the best pair beats it by more than the best's standard error."""
    top = best(pairs)
    return top if cv_mean(top) - cv_se(top) > cv_mean(anchor(pairs)) else anchor(pairs)


def paired_anchor(pairs: list[Pair]) -> Pair:
    """The best of the pairs that beat the anchor by more than one paired standard error."""
    base = np.asarray(anchor(pairs)["cv_values"])
    better = []
    for pair in pairs:
        diff = np.asarray(pair["cv_values"]) - base
        if diff.mean() > diff.std(ddof=1) / math.sqrt(len(diff)):
            better.append(pair)
    return best(better) if better else anchor(pairs)


def elkan(pairs: list[Pair]) -> Pair:
    """The threshold is t*; the best loss setting there (training.tuning's ``elkan``)."""
    return best([p for p in pairs if is_elkan(p)])


def lower_bound(pairs: list[Pair]) -> Pair:
    return max(pairs, key=lambda p: cv_mean(p) - cv_se(p))


def rule_then_setting(pairs: list[Pair], average: Callable = statistics.fmean) -> Pair:
    """The rule with the best average CV value over settings, then its best setting."""
    by_rule: dict[str, list[float]] = {}
    for pair in pairs:
        by_rule.setdefault(pair["rule"], []).append(cv_mean(pair))
    rule = max(by_rule, key=lambda r: average(by_rule[r]))
    return best([p for p in pairs if p["rule"] == rule])


SELECTIONS: dict[str, Callable[[list[Pair]], Pair]] = {
    "best (all pairs)": best,
    "elkan": elkan,
    "one-SE to builtin@t*": one_se_anchor,
    "paired one-SE": paired_anchor,
    "mean - SE": lower_bound,
    "rule (mean), setting": rule_then_setting,
    "rule (median), setting": lambda p: rule_then_setting(p, statistics.median),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    splits = [s for run in args.runs for s in json.loads(run.read_text())["splits"]]
    gaps: dict[str, list[float]] = {name: [] for name in SELECTIONS}
    for split in splits:
        for name, select in SELECTIONS.items():
            gaps[name].append(select(split["pairs"])["held_out"] - split["medical@0.5"])
    columns = {
        "builtin@t* (no search)": [s["builtin@t*"] - s["medical@0.5"] for s in splits],
        "treat all (no model)": [s["treat all"] - s["medical@0.5"] for s in splits],
        "oracle (best pair held out)": [
            max(p["held_out"] for p in s["pairs"]) - s["medical@0.5"] for s in splits
        ],
    }
    seeds = [s["split_seed"] for s in splits]
    print(f"{len(splits)} splits (seeds {min(seeds)}..{max(seeds)}); held-out EV minus medical@0.5")
    print(f"  {'selection':<28} {'mean':>9} {'s.e.':>7} {'better':>7}")
    for name, values in {**gaps, **columns}.items():
        se = statistics.stdev(values) / math.sqrt(len(values))
        wins = sum(v > 0 for v in values)
        print(
            f"  {name:<28} {statistics.fmean(values):>+9,.1f} {se:>7,.1f} {wins:>3}/{len(values)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
