"""Generated data with a known P(y | x), trained through the command line with a 50:1
weighted loss: the graph's probability is close to the truth and its Bayes decisions are
worth nearly what the truth's are, while the raw score is far from it (issue 23)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from costaware.card import read_card
from training.synthetic import against_truth, logistic_truth

ROOT = Path(__file__).resolve().parents[2]


def test_weighted_loss_model_is_calibrated_against_the_truth(tmp_path):
    truth = logistic_truth(n=20_000, features=10, prevalence=0.05, seed=0)
    assert 0.04 <= truth.y.mean() <= 0.06
    data = truth.write_csv(tmp_path / "generated.csv")
    argv = [sys.executable, "-m", "training", "--data", str(data), "--label", "label"]
    argv += ["--variant", "name=g,loss=custom,fn_cost=50,fp_cost=1"]
    argv += ["--models-dir", str(tmp_path / "m"), "--no-report"]
    # six fits of 15,000 rows (the model and five folds); bounded, not timed
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    card = read_card(tmp_path / "m" / "g")
    figures = against_truth(
        truth,
        card.training.data.test_rows,
        np.asarray(card.held_out.scores),
        np.asarray(card.held_out.probabilities),
    )
    assert figures["mean_abs_probability"] <= 0.03
    assert figures["mean_abs_score"] >= 0.1
    assert figures["loss_fraction"] <= 0.02
