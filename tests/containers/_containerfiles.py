"""Just enough of Dockerfile and .dockerignore semantics to check ours without a Docker engine."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def flags_and_operands(self) -> tuple[dict[str, str], list[str]]:
        """Split ``--flag=value`` options from the operands (shell-form only)."""
        flags: dict[str, str] = {}
        operands: list[str] = []
        for word in shlex.split(self.args):
            if word.startswith("--") and not operands:
                name, _, value = word[2:].partition("=")
                flags[name] = value
            else:
                operands.append(word)
        return flags, operands

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def has_stage(self, name: str) -> bool:
        return any(stage.name == name for stage in self.stages)

    def lineage(self, name: str) -> list[Stage]:
        """The stage and its ancestors through FROM, nearest first."""
        chain = [self.stage(name)]
        while self.has_stage(chain[-1].base):
            chain.append(self.stage(chain[-1].base))
        return chain

    def contributing(self, name: str) -> list[Stage]:
        """Every stage whose work ends up in ``name``: FROM ancestors and COPY --from sources."""
        seen: list[Stage] = []
        pending = [name]
        while pending:
            current = pending.pop()
            if any(stage.name == current for stage in seen) or not self.has_stage(current):
                continue
            stage = self.stage(current)
            seen.append(stage)
            pending.append(stage.base)
            for copy in stage.of("COPY"):
                flags, _ = copy.flags_and_operands()
                if "from" in flags:
                    pending.append(flags["from"])
        return seen

    def effective(self, name: str, keyword: str) -> Instruction | None:
        """The instruction of this kind in force in a stage (the last one, inherited)."""
        for stage in self.lineage(name):
            found = stage.of(keyword)
            if found:
                return found[-1]
        return None

    def image_path_to_repo(self, name: str, image_path: str) -> Path | None:
        """Map a path inside the image to the repository file a COPY put there.

        Relative COPY paths are taken against ``/app``, the WORKDIR of all our stages.
        """
        target = PurePosixPath(image_path)
        for stage in self.lineage(name):
            for copy in reversed(stage.of("COPY")):
                flags, operands = copy.flags_and_operands()
                if len(operands) < 2:
                    continue
                *sources, dest = operands
                base = PurePosixPath("/app") / dest
                if target != base and base not in target.parents:
                    continue
                rest = target.relative_to(base)
                for source in sources:
                    if "from" in flags:
                        if self.has_stage(flags["from"]):
                            found = self.image_path_to_repo(
                                flags["from"], str(PurePosixPath("/app") / source / rest)
                            )
                            if found is not None:
                                return found
                        continue
                    origin = REPO / source
                    if origin.is_dir():
                        candidate = origin / rest
                    elif dest.endswith("/") or len(sources) > 1:
                        candidate = origin if rest == PurePosixPath(origin.name) else None
                    else:
                        candidate = origin if rest == PurePosixPath(".") else None
                    if candidate is not None and candidate.exists():
                        return candidate
        return None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    buffer = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        # Docker drops comment lines even in the middle of a continued instruction.
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        lines.append((start, buffer))
        buffer = ""
    if buffer:
        lines.append((start, buffer))
    return lines


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [word for word in words if not word.startswith("--platform")]
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda match: global_args.get(match.group(1), ""), words[0]
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
        elif not stages:
            if keyword == "ARG":
                key, _, value = args.partition("=")
                global_args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return Dockerfile(global_args=global_args, stages=stages)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        else:
            out += re.escape(char)
        index += 1
    return re.compile(out + r"\Z")


class DockerIgnore:
    """Docker's rules: patterns in order, the last that matches a path or a parent wins."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = str(PurePosixPath("/" + pattern))[1:] or "."
            self.rules.append((negate, _pattern_regex(pattern)))

    def excluded(self, relative: str) -> bool:
        path = PurePosixPath(relative)
        candidates = [str(path), *(str(parent) for parent in path.parents if str(parent) != ".")]
        verdict = False
        for negate, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                verdict = not negate
        return verdict

    def included_files(self, root: Path, relative: str) -> list[str]:
        """Files under ``relative`` that reach the build context (skipping git-ignored noise)."""
        start = root / relative
        if start.is_file():
            return [] if self.excluded(relative) else [relative]
        found = []
        for path in sorted(start.rglob("*")):
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                if not self.excluded(rel):
                    found.append(rel)
        return found
