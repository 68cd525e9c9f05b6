import re
import subprocess
import sys

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
