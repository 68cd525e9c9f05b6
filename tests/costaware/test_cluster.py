"""``costaware.cluster``: the Dask plumbing both roles share, and the import boundary it
exists for (training never imports the serving role)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_THEN_CHECK = """
import sys
import costaware.cluster
print(sorted(m for m in ("tensorflow", "fastapi", "distributed", "dask", "service")
             if m in sys.modules))
"""


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (at any depth of its code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_training_module_imports_the_serving_role():
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "training").rglob("*.py"))
        if "service" in imported_packages(path)
    ]
    assert offenders == []


def test_importing_the_cluster_module_loads_no_framework_and_no_dask():
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_THEN_CHECK],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.stdout.strip() == "[]"


def test_the_batch_engine_and_tune_use_the_one_connect():
    for module in ("service/batch/jobs.py", "training/tuning_cli.py", "tests/conftest.py"):
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        sources = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and any(a.name == "connect" for a in node.names)
        }
        assert sources == {"costaware.cluster"}, module
