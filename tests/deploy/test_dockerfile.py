"""The Dockerfile and .dockerignore, read statically: multi-stage, pinned, non-root, no build tools left, and
an entrypoint that is a console script the wheel installs."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any

from tpt.settings import Settings

from .conftest import ROOT, image_is_pinned


@dataclass
class Stage:
    image: str
    name: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (instruction, arguments)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.lines if i == instruction]


def parse() -> tuple[dict[str, str], list[Stage]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())  # join continuation lines
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ARG" and not stages:
            key, _, default = rest.partition("=")
            global_args[key] = default
        elif instruction == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            stages.append(Stage(image, words[2] if len(words) > 2 and words[1].upper() == "AS" else ""))
        elif stages:
            stages[-1].lines.append((instruction, rest))
    return global_args, stages


def test_multi_stage_with_pinned_python_images() -> None:
    _, stages = parse()
    assert len(stages) >= 2 and stages[0].name == "builder" and stages[-1].name == "runtime"
    for stage in stages:
        assert image_is_pinned(stage.image), f"{stage.image} is not pinned"
        assert stage.image.startswith("python:3.11."), "the project targets Python 3.11"
        assert "slim" in stage.image


def test_the_wheel_is_built_in_the_builder_and_only_the_venv_is_copied() -> None:
    _, stages = parse()
    builder, runtime = stages[0], stages[-1]
    assert any("pip wheel" in run for run in builder.args("RUN"))
    assert [c for c in runtime.args("COPY") if "--from=builder" in c] == ["--from=builder /opt/venv /opt/venv"]
    assert not [c for c in runtime.args("COPY") if "--from" not in c], "no source tree in the runtime image"
    runtime_runs = " ".join(runtime.args("RUN"))
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in runtime_runs, f"the runtime stage must not install build tools ({tool})"
    assert "pip uninstall" in runtime_runs and "pip" in runtime_runs.split("uninstall", 1)[1]


def test_runs_as_a_non_root_user() -> None:
    _, stages = parse()
    users = stages[-1].args("USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_the_entrypoint_is_an_installed_console_script(pyproject: dict[str, Any]) -> None:
    _, stages = parse()
    entrypoint = json.loads(stages[-1].args("ENTRYPOINT")[-1])  # exec form: signals reach the process
    scripts = pyproject["project"]["scripts"]
    assert entrypoint[0] in scripts, f"{entrypoint[0]} is not one of [project.scripts] {sorted(scripts)}"
    assert json.loads(stages[-1].args("CMD")[-1]) == ["worker"]
    assert any(arg.startswith("PATH=/opt/venv/bin") for arg in " ".join(stages[-1].args("ENV")).split())


def test_the_probe_port_is_exposed() -> None:
    _, stages = parse()
    assert stages[-1].args("EXPOSE") == [str(Settings.model_fields["health_port"].default)]


def test_dockerignore_keeps_what_the_wheel_needs_and_nothing_else(pyproject: dict[str, Any]) -> None:
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines()
             if r.strip() and not r.startswith("#")]

    def included(path: str) -> bool:
        verdict = True
        for rule in rules:  # the last matching rule wins, as in Docker
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or (
                    pattern.startswith("**/") and fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern[3:])):
                verdict = negate
        return verdict

    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    needed = {"pyproject.toml", pyproject["project"]["readme"]} | {f"{p}/__init__.py" for p in packages}
    for path in needed:
        assert included(path), f".dockerignore leaves out {path}, which the wheel build needs"
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".env", "tpt/__pycache__/x.pyc",
                 "tpt.egg-info/PKG-INFO"):
        assert not included(path), f".dockerignore lets {path} into the build context"
    _, stages = parse()
    copied = {a.split()[0] for a in stages[0].args("COPY")}
    assert all(included(c if "." in c else f"{c}/__init__.py") for c in copied if c != "pyproject.toml")


def test_image_environment_uses_real_settings() -> None:
    from .conftest import setting_names

    _, stages = parse()
    names = {word.split("=", 1)[0] for env in stages[-1].args("ENV") for word in env.split()}
    assert {n for n in names if n.startswith("TPT_")} <= setting_names()
