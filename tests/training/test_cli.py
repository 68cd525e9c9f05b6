import re
import subprocess
import sys
from pathlib import Path

import pytest

from costaware.card import read_card
from training.cli import SUBCOMMANDS, build_parser, main


def test_help_documents_every_option():
    parser = build_parser()
    text = parser.format_help()
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text
        if action.option_strings and action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"
    for name in SUBCOMMANDS:
        assert name in text


HELP_THEN_CHECK = """
import sys
from training.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print("tensorflow" in sys.modules)
"""


def test_help_needs_no_tensorflow():
    out = subprocess.run(
        [sys.executable, "-c", HELP_THEN_CHECK], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith("False")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--variant", "name=a,fn_cost=x"], "fn_cost='x' is not a number"),
        (["--variant", "name=a", "--variant", "name=a"], "variant name 'a' given twice"),
        (["--epochs", "0"], "0 must be at least 1"),
        (["--threshold", "2"], "2 is not between 0 and 1"),
    ],
)
def test_bad_options_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        status = main([*argv, "--no-report"])
        raise SystemExit(status)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unavailable_subcommand_is_reported(monkeypatch, capsys):
    from training import cli

    monkeypatch.setitem(cli.SUBCOMMANDS, "nothing", cli.Subcommand("x", "training.no_such_module"))
    assert main(["nothing"]) == 2
    assert "not available" in capsys.readouterr().err


def test_training_run_writes_models_report_and_summary(tmp_path, capsys):
    argv = [
        "--variant", "name=a,loss=builtin,epochs=1",
        "--variant", "name=q,tp=-35280,fp=-1287.67,tn=0,fn=-252000,epochs=1",
        "--models-dir", str(tmp_path / "m"),
        "--report-dir", str(tmp_path / "r"),
    ]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^a\s+builtin\s+1:1\s", out, re.M)
    assert re.search(r"^q\s+custom\s+216720:1287.67\s", out, re.M)
    assert "[q] epoch   1/1" in err and "[a] exported" in err
    card = read_card(tmp_path / "m" / "q")
    assert card.cost_matrix.model_dump() == {"tp": -35280, "fp": -1287.67, "tn": 0, "fn": -252000}
    index = (tmp_path / "r" / "index.html").read_text()
    for png in ("roc.png", "close-confusion-a.png", "close-confusion-q.png"):
        assert png in index
        assert (tmp_path / "r" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tune_is_registered_directly_and_tuning_imports_no_cli():
    import ast
    from pathlib import Path

    import training.tuning

    assert SUBCOMMANDS["tune"].module == "training.tuning_cli"
    tree = ast.parse(Path(training.tuning.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not {"training.cli", "training.tuning_cli", "training.options"} & imported


def _held_out_value(card, costs):
    import numpy as np

    y = np.asarray(card.held_out.labels)
    treat = np.asarray(card.held_out.scores) >= card.threshold
    value = np.where(y == 1, np.where(treat, costs["tp"], costs["fn"]), 0.0)
    value = value + np.where(y == 0, np.where(treat, costs["fp"], costs["tn"]), 0.0)
    return float(value.mean())


def test_own_csv_and_own_matrix_are_priced_with_that_matrix(tmp_path, capsys, data_dir):
    own = {"tp": -100.0, "fp": -300.0, "tn": 0.0, "fn": -1000.0}
    argv = [
        "--data", str(data_dir / "good_header.csv"), "--label", "diagnosis", "--test-size", "0.5",
        "--calibration-folds", "3",  # 12 training rows, 3 of them positive
        "--variant", "name=mine,tp=-100,fp=-300,tn=0,fn=-1000,epochs=1",
        "--variant", "name=ce,epochs=1",
        "--cost-matrix", "tp=-100,fp=-300,tn=0,fn=-1000",
        "--models-dir", str(tmp_path / "m"), "--report-dir", str(tmp_path / "r"),
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "QALY" not in out and "patient" not in out
    assert "priced with tp -100, fp -300, tn 0, fn -1,000" in out
    assert "from variant mine's tp/fp/tn/fn and --cost-matrix" in out
    for name in ("mine", "ce"):
        card = read_card(tmp_path / "m" / name)
        assert card.cost_matrix.model_dump() == own
        row = re.search(rf"^{name}\s.*\s(-?[\d,]+\.\d\d)$", out, re.M)
        assert float(row.group(1).replace(",", "")) == pytest.approx(
            _held_out_value(card, own), abs=0.005
        )
    index = (tmp_path / "r" / "index.html").read_text()
    assert "QALY" not in index and "tp -100, fp -300, tn 0, fn -1,000" in index


def test_variants_priced_with_different_matrices_are_told_apart(tmp_path, capsys, data_dir):
    argv = [
        "--data", str(data_dir / "good_header.csv"), "--label", "diagnosis", "--test-size", "0.5",
        "--calibration-folds", "3",  # 12 training rows, 3 of them positive
        "--variant", "name=mine,tp=-100,fp=-300,tn=0,fn=-1000,epochs=1",
        "--variant", "name=ce,epochs=1", "--no-report", "--models-dir", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^mine\s.*\sM1$", out, re.M) and re.search(r"^ce\s.*-\s+M2$", out, re.M)
    assert "M2: not priced: no cost matrix stated (pass --cost-matrix" in out
    assert read_card(tmp_path / "ce").cost_matrix is None


@pytest.mark.parametrize("costs", ["tp=0,fp=0,tn=0,fn=0", "tp=-5,fp=-2,tn=-2,fn=-5"])
def test_a_cost_matrix_without_preference_is_refused_before_training(costs, tmp_path, capsys):
    # v_tp = v_fn and v_tn = v_fp: every decision is worth the same, nothing to train for.
    argv = ["--cost-matrix", costs, "--no-report", "--epochs", "1"]
    assert main([*argv, "--models-dir", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())
    err = capsys.readouterr().err
    assert "--cost-matrix: every decision has the same value whatever the truth" in err
    assert err.count("\n") == 1


def test_bad_cost_matrix_option_is_one_line(capsys):
    assert main(["--cost-matrix", "tp=1,fp=x,tn=0,fn=-5", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "--cost-matrix: fp='x' is not a number" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------
# An existing model folder is never overwritten unless --replace asks for it

WRITES_A_MODEL = {
    "variants": ["--variant", "name=keep,epochs=1", "--no-report"],
    "subsample": ["--variant", "name=keep,epochs=1", "--subsample-negatives", "5", "--no-report"],
    "own data": ["--variant", "name=keep,epochs=1", "--data", "own.csv", "--label", "y"],
    "tune": ["tune", "--name", "keep", "--epochs", "1", "--no-report"],
    "multiclass": ["multiclass", "--name", "keep", "--epochs", "1"],
    "multiclass own data": ["multiclass", "--name", "keep", "--data", "own.csv", "--label", "y",
                            "--value-matrix", "matrix.json"],
}  # fmt: skip


def _refuse_to_read_data(monkeypatch):
    """Any read of training data fails the test: the refusal must come before it (and so
    before any training)."""
    import training.multiclass_cli
    import training.pipeline

    def read(*args, **kwargs):
        raise AssertionError("training data read although the model folder exists")

    monkeypatch.setattr(training.pipeline, "load_data", read)
    monkeypatch.setattr(training.multiclass_cli, "load_wine", read)
    monkeypatch.setattr(training.multiclass_cli, "load_multiclass_csv", read)


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("argv", WRITES_A_MODEL.values(), ids=WRITES_A_MODEL.keys())
def test_an_existing_model_folder_is_refused_before_any_training(
    argv, tmp_path, monkeypatch, capsys
):
    _refuse_to_read_data(monkeypatch)
    monkeypatch.chdir(tmp_path)
    Path("matrix.json").write_text('{"classes": ["x", "y"], "values": [[1, 0], [0, 1]]}')
    folder = tmp_path / "keep"
    folder.mkdir()
    (folder / "model-card.json").write_text('{"name": "keep"}')
    assert main([*argv, "--models-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{folder} already exists: pass --replace to overwrite it" in err
    assert _files(folder) == {"model-card.json": b'{"name": "keep"}'}


def test_replace_overwrites_and_an_empty_folder_holds_no_model(tmp_path, capsys):
    argv = ["--variant", "name=a,loss=builtin,epochs=1", "--no-report"]
    argv += ["--models-dir", str(tmp_path)]
    (tmp_path / "a").mkdir()
    assert main(argv) == 0  # an empty folder is no model to lose
    assert read_card(tmp_path / "a").name == "a"
    (tmp_path / "a" / "model-card.json").write_text("not a card")
    assert main(argv) == 2
    assert (tmp_path / "a" / "model-card.json").read_text() == "not a card"
    assert main([*argv, "--replace"]) == 0
    assert read_card(tmp_path / "a").name == "a"
    capsys.readouterr()


def test_make_targets_that_retrain_the_shipped_models_pass_replace():
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        ["make", "--dry-run", "--always-make", "-f", "Makefile", "train", "train-multiclass",
         "tune"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    commands = [line for line in out.splitlines() if " -m training" in line]
    assert len(commands) == 3, out
    for command in commands:
        assert "--models-dir models" in command and command.split()[-1] == "--replace", command
