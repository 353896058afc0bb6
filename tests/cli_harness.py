"""The CLI run in process, and CLI cases kept as data files.

`deployer.cli.main` runs in the test's own interpreter: no new Python, no imports again, which is
what makes the CLI suites fast. What the user would see is the same: the rich consoles of
`deployer.cli` look up `sys.stdout` / `sys.stderr` when they print, so pytest's `capsys` captures
them, and the working directory (which shapes every path shown) is set per run.

A case file (YAML) describes one run over a small repository whose starting tree the test module
gives; the file's name is the test id, and adding a case is adding a file:

    files:                        # written below the repository root, in this order
      deploy.yaml: |              #   text, written as UTF-8
        version: 1
        ...
      fn/data.bin: {hex: 00ff}    #   bytes
      fn/key: {symlink: ../x}     #   a symbolic link to this target
      fn/pipe: {fifo: true}       #   a named pipe
      fn/empty: {dir: true}       #   a directory
    args: [validate, fn]          # optional, default [validate]
    env: {AWS_REGION: eu-west-1}  # optional, added to the environment
    exit: 1                       # the exit code
    stdout: []                    # every line printed to stdout, exactly
    stderr:                       # every line printed to stderr, exactly
      - "deploy.yaml:7:5: functions[0].biuld: unknown key 'biuld'; did you mean 'build'?"
      - 1 problem(s) found

In symlink targets and expected lines, `{root}` stands for the repository root's absolute path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pytest
from ruamel.yaml import YAML

from deployer.cli import main


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


class InProcessCli:
    """Runs `deployer ARGS` in this process, as a user with no AWS configuration and no colours."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        self._monkeypatch = monkeypatch
        self._capsys = capsys
        for name in list(os.environ):
            if name.startswith("AWS_"):
                monkeypatch.delenv(name)
        for name, value in {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                            "AWS_EC2_METADATA_DISABLED": "true", "NO_COLOR": "1"}.items():
            monkeypatch.setenv(name, value)

    def __call__(self, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> CliResult:
        self._monkeypatch.chdir(cwd)
        for name, value in (env or {}).items():
            self._monkeypatch.setenv(name, value)
        self._capsys.readouterr()  # what came before is not this run's output
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out, err = self._capsys.readouterr()
        code = exited.value.code
        assert isinstance(code, int), code
        return CliResult(code, out, err)


@dataclass(frozen=True)
class CliCase:
    """One case file: see the module's docstring."""

    name: str
    files: Mapping[str, Any]
    args: tuple[str, ...]
    env: Mapping[str, str]
    exit_code: int
    stdout: tuple[str, ...]
    stderr: tuple[str, ...]


KEYS = {"files", "args", "env", "exit", "stdout", "stderr"}


def load_cases(directory: Path) -> list[CliCase]:
    """Every `*.yaml` case in `directory`, sorted by name."""
    cases = []
    for path in sorted(directory.glob("*.yaml")):
        data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict) and set(data) <= KEYS and "exit" in data, \
            f"{path}: a case is a mapping of {sorted(KEYS)}; 'exit' is required"
        cases.append(CliCase(path.stem, data.get("files") or {}, tuple(data.get("args", ["validate"])),
                             data.get("env") or {}, data["exit"], tuple(data.get("stdout", [])),
                             tuple(data.get("stderr", []))))
    assert cases, f"no case files in {directory}"
    return cases


def write_files(root: Path, files: Mapping[str, Any]) -> None:
    """Write a case's files below `root`, replacing what is there."""
    for rel, spec in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.is_file() or path.is_fifo():
            path.unlink()
        if isinstance(spec, str):
            path.write_text(spec, encoding="utf-8")
        elif set(spec) == {"hex"}:
            path.write_bytes(bytes.fromhex(spec["hex"]))
        elif set(spec) == {"symlink"}:
            path.symlink_to(spec["symlink"].replace("{root}", str(root)))
        elif spec == {"fifo": True}:
            os.mkfifo(path)
        elif spec == {"dir": True}:
            path.mkdir(exist_ok=True)
        else:
            raise AssertionError(f"{rel}: a file is text, {{hex}}, {{symlink}}, {{fifo: true}} or {{dir: true}}; "
                                 f"found {spec!r}")


def run_case(case: CliCase, root: Path, cli: InProcessCli) -> None:
    """Write the case's files below `root`, run the CLI there, and compare all it printed."""
    write_files(root, case.files)
    result = cli(*case.args, cwd=root, env=case.env)
    shown = str(root.resolve())
    assert (result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()) == (
        case.exit_code,
        [line.replace("{root}", shown) for line in case.stdout],
        [line.replace("{root}", shown) for line in case.stderr],
    )
    # Every line ends with a newline: nothing is left half printed.
    assert result.stdout.endswith("\n") or not result.stdout
    assert result.stderr.endswith("\n") or not result.stderr
