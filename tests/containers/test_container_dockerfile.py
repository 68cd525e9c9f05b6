"""Static checks of the Dockerfile and .dockerignore: what a build would need, without an engine."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _containerfiles import REPO, DockerIgnore, Instruction, parse_dockerfile

DOCKERFILE = parse_dockerfile(REPO / "Dockerfile")
IGNORE = DockerIgnore((REPO / ".dockerignore").read_text(encoding="utf-8"))
TARGETS = ("serve", "train")


def _all_instructions(keyword: str) -> list:
    return [ins for stage in DOCKERFILE.stages for ins in stage.of(keyword)]


def _assert_runnable_script(path: Path) -> None:
    assert path.is_file(), f"{path} does not exist"
    assert os.access(path, os.X_OK), f"{path} is not executable"
    first = path.read_bytes().split(b"\n", 1)[0]
    assert first.startswith(b"#!"), f"{path} has no shebang"
    assert b"\r" not in path.read_bytes(), f"{path} has CRLF line endings"


def test_serve_is_the_default_target_and_train_exists():
    assert DOCKERFILE.stages[-1].name == "serve", "plain `docker build .` must give the serve image"
    assert DOCKERFILE.has_stage("train")


def test_base_image_and_uv_are_pinned():
    base = DOCKERFILE.global_args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    for stage in DOCKERFILE.stages:
        assert not stage.base.endswith(":latest") and stage.base, stage
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    uv_version = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.MULTILINE).group(1)
    installs = [ins.args for ins in _all_instructions("RUN") if "pip install" in ins.args]
    assert any(f"uv=={uv_version}" in args for args in installs), installs
    envs = " ".join(ins.args for ins in _all_instructions("ENV"))
    assert "UV_PYTHON_DOWNLOADS=never" in envs


def _uv_syncs(stages: list) -> list[str]:
    return [
        ins.args
        for stage in stages
        for ins in stage.of("RUN")
        if re.search(r"\buv sync\b", ins.args)
    ]


def test_serve_image_installs_no_training_extra():
    syncs = _uv_syncs(DOCKERFILE.contributing("serve"))
    assert syncs, "the serve image installs nothing"
    for args in syncs:
        assert "--locked" in args and "--no-dev" in args, args
        assert "--extra" not in args and "--all-extras" not in args, args


def test_train_image_installs_the_training_extra():
    syncs = _uv_syncs(DOCKERFILE.contributing("train"))
    assert syncs and all("--extra train" in args and "--locked" in args for args in syncs)


@pytest.mark.parametrize("deps_stage", ["serve-deps", "train-deps"])
def test_dependencies_are_installed_before_the_source_is_copied(deps_stage):
    stage = DOCKERFILE.stage(deps_stage)
    order = []
    for ins in stage.instructions:
        if ins.keyword == "COPY":
            _, operands = ins.flags_and_operands()
            order.append(("copy", operands[:-1]))
        elif ins.keyword == "RUN" and "uv sync" in ins.args:
            order.append(("sync", "--no-install-project" in ins.args))
    first_sync = next(i for i, (kind, _) in enumerate(order) if kind == "sync")
    assert order[first_sync][1], "the first uv sync must skip the project (deps-only layer)"
    copied_before = [src for kind, srcs in order[:first_sync] if kind == "copy" for src in srcs]
    assert sorted(copied_before) == ["pyproject.toml", "uv.lock"], copied_before
    assert order[-1] == ("sync", False), "the project itself is installed last"


def test_every_copied_path_exists_and_reaches_the_build_context():
    checked = 0
    for ins in _all_instructions("COPY") + _all_instructions("ADD"):
        flags, operands = ins.flags_and_operands()
        if "from" in flags:
            continue
        for source in operands[:-1]:
            relative = source.rstrip("/") or "."
            assert (REPO / relative).exists(), f"line {ins.line}: {source} is not in the repo"
            files = IGNORE.included_files(REPO, relative)
            assert files, f"line {ins.line}: .dockerignore excludes everything in {source}"
            checked += 1
    assert checked >= 5


def test_dockerignore_keeps_local_state_out_of_the_context():
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "service/__pycache__/x.pyc"):
        assert IGNORE.excluded(path), path
    for path in ("pyproject.toml", "uv.lock", "service/__init__.py", "docker/entrypoint"):
        assert not IGNORE.excluded(path), path


@pytest.mark.parametrize("target", TARGETS)
def test_entrypoint_is_exec_form_and_its_script_is_runnable(target):
    entrypoint = DOCKERFILE.effective(target, "ENTRYPOINT")
    assert entrypoint is not None
    argv = entrypoint.exec_form()
    assert argv, f"ENTRYPOINT must be exec form so signals reach the server: {entrypoint.args}"
    script = DOCKERFILE.image_path_to_repo(target, argv[0])
    assert script is not None, f"{argv[0]} is not put in the image by any COPY"
    _assert_runnable_script(script)
    shell = shutil.which("sh")
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    cmd = DOCKERFILE.effective(target, "CMD")
    assert cmd is not None and cmd.exec_form() == [target]


def test_serve_image_has_healthcheck_label_port_and_models():
    healthcheck = DOCKERFILE.effective("serve", "HEALTHCHECK")
    assert healthcheck is not None
    words = healthcheck.args.split("CMD", 1)
    assert len(words) == 2, healthcheck.args
    argv = Instruction("CMD", words[1], healthcheck.line).exec_form()
    assert argv and argv[0] == "python", "the slim image has no curl; python urllib does it"
    script = DOCKERFILE.image_path_to_repo("serve", argv[1])
    assert script is not None
    _assert_runnable_script(script)
    assert "/ping" in script.read_text(encoding="utf-8")

    labels = " ".join(
        ins.args for stage in DOCKERFILE.lineage("serve") for ins in stage.of("LABEL")
    )
    assert "com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in labels
    exposed = [
        ins.args.split() for stage in DOCKERFILE.lineage("serve") for ins in stage.of("EXPOSE")
    ]
    assert ["8080"] in exposed
    baked = DOCKERFILE.image_path_to_repo("serve", "/app/models")
    assert baked == REPO / "models"


@pytest.mark.parametrize("target", TARGETS)
def test_runs_as_a_non_root_user(target):
    user = DOCKERFILE.effective(target, "USER")
    assert user is not None
    name = user.args.split(":")[0]
    assert name not in ("root", "0"), user.args


def test_every_stage_works_in_app():
    # image_path_to_repo resolves relative COPY paths against /app; keep that true.
    for stage in DOCKERFILE.stages:
        workdirs = [ins.args for s in DOCKERFILE.lineage(stage.name) for ins in s.of("WORKDIR")]
        assert workdirs and workdirs[0] == "/app", (stage.name, workdirs)


def test_serve_image_lays_out_app_like_the_checkout():
    # service/settings.py finds the baked-in models/ beside its own package, so the image
    # must keep the checkout's layout under /app.
    assert DOCKERFILE.image_path_to_repo("serve", "/app/models") == REPO / "models"
    assert DOCKERFILE.image_path_to_repo("serve", "/app/service/__init__.py") == (
        REPO / "service/__init__.py"
    )
    assert DOCKERFILE.image_path_to_repo("serve", "/app/pyproject.toml") == REPO / "pyproject.toml"
    assert DOCKERFILE.image_path_to_repo("train", "/app/training/__init__.py") == (
        REPO / "training/__init__.py"
    )


def test_trainer_sample_input_stays_out_of_the_images():
    assert IGNORE.excluded("docker/train-input/data/train/reference.csv")
    assert not IGNORE.excluded("docker/healthcheck.py")
