"""docs/extending.md runs as written: every block, in order, for real, and the outcomes the page claims hold.

- A block whose first line is `# file: PATH` is written to PATH: under the repository for `conf/...` (removed
  afterwards, even when the test fails), else under a scratch folder that stands for the root of the user's
  checkout (the commands' working directory, where `mylab/` goes).
- `bash` blocks run command by command, as one shell session would (exported variables carry over). The first
  cnnlab console script runs as a real subprocess, which proves `export PYTHONPATH=$PWD` lets a console script
  import the user's package; the others call the same entry point in this process (each new Python would spend
  ~6 s importing torch and Lightning), and so does `python -m pytest` (through `pytest.main`). A command ending
  in a comment `... exit N` must exit N, the others 0.
- `python` blocks run in one namespace, in the scratch folder.
- A `text` block is the expected output of the block before it: each line but `...` must appear, in order, in
  an output line (whitespace runs collapsed); `…` inside a line matches any text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SCRIPTS, run_script

DOC = REPO / "docs" / "extending.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)
FILE = re.compile(r"\A# file: (\S+)\n")
EXIT = re.compile(r"#[^#]*\bexit (\d+)\s*$")
PACKAGE = "mylab"


def page_blocks() -> list[tuple[str, str, int]]:
    """(language, body, line number of the body's first line) of every fenced block of the page, in order."""
    text = DOC.read_text()
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start(2)) + 1) for m in FENCE.finditer(text)]


def repo_files(blocks: list[tuple[str, str, int]]) -> dict[Path, str]:
    """The repository files the page writes (its conf/ files), with the text each gets."""
    files = {}
    for _, body, _ in blocks:
        if (m := FILE.match(body)) and m.group(1).startswith("conf/"):
            files[REPO / m.group(1)] = body
    return files


def commands(body: str) -> list[str]:
    """The command lines of a bash block: continuations joined, blank and comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", "", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def squash(line: str) -> str:
    return " ".join(line.split())


def assert_shows(expected: str, output: str, where: str) -> None:
    """Every line of `expected` (but `...`) appears in `output`, in order; `…` matches any text."""
    lines = [squash(line) for line in output.splitlines()]
    at = 0
    for want in (squash(line) for line in expected.splitlines()):
        if want in ("", "..."):
            continue
        pattern = re.compile(".*?".join(map(re.escape, want.split("…"))))
        found = next((i for i in range(at, len(lines)) if pattern.search(lines[i])), None)
        assert found is not None, (
            f"{where}: the page shows\n  {want}\nbut the output (from line {at}) was:\n"
            + ("\n".join(lines[at:])[-6000:])
        )
        at = found + 1


class Shell:
    """One shell session in `cwd`: commands run in bash, and what they export carries over to the next."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.env = dict(os.environ)
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"  # the venv's
        self.env.pop("PYTHONPATH", None)  # as a fresh shell: the page sets it
        self._env_file = cwd.parent / f"{cwd.name}.env"

    def run(self, command: str) -> tuple[int, str]:
        script = f'{command}\n__rc=$?\nenv -0 > "{self._env_file}"\nexit $__rc\n'
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        if self._env_file.exists():
            entries = self._env_file.read_text().split("\0")
            self.env = dict(e.split("=", 1) for e in entries if "=" in e)
            self._env_file.unlink()
        return proc.returncode, proc.stdout


def in_process(argv: list[str]) -> bool:
    """Whether a command is a cnnlab console script or `python -m pytest`, which run in this process."""
    return argv[0] in SCRIPTS or argv[:3] == ["python", "-m", "pytest"]


def run_in_process(argv: list[str], capfd) -> tuple[int, str]:
    """A cnnlab console script through its entry point, or pytest, in this process: (exit code, stdout then
    stderr)."""
    if argv[0] in SCRIPTS:
        return run_script(argv)
    code = int(pytest.main(argv[3:]))
    out, err = capfd.readouterr()
    return code, out + err


@pytest.fixture
def page_conf_files():
    """The page's conf/ files: refused if a real config of that name exists, removed afterwards in any case."""
    files = repo_files(page_blocks())
    clashes = [p for p, text in files.items() if p.exists() and p.read_text() != text]
    assert not clashes, f"the page would overwrite configs that are not its own: {clashes}"
    try:
        yield files
    finally:
        for path in files:
            path.unlink(missing_ok=True)


@pytest.fixture
def clean_process(tmp_path, process_state_restored):
    """Undo what the in-process commands change globally: besides logging and the environment, sys.path and the
    modules imported from the scratch folder (the user's package and test file)."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)) or name == PACKAGE:
            del sys.modules[name]


def test_every_block_of_the_extending_page_runs_and_shows_what_it_claims(
    tmp_path, monkeypatch, capfd, page_conf_files, clean_process
):
    blocks = page_blocks()
    home = tmp_path / "checkout"  # stands for the root of the user's checkout
    home.mkdir()
    monkeypatch.chdir(home)
    shell = Shell(home)
    namespace: dict = {}
    ran: dict[str, tuple[int, str]] = {}  # command → (exit code, output)
    first_script = True
    previous = ""
    capfd.readouterr()
    for language, body, line in blocks:
        where = f"docs/extending.md:{line} ({language} block)"
        for entry in filter(None, shell.env.get("PYTHONPATH", "").split(os.pathsep)):
            if entry not in sys.path:
                monkeypatch.syspath_prepend(entry)  # what the page's `export PYTHONPATH` gives the shell
        if m := FILE.match(body):
            path = REPO / m.group(1) if m.group(1).startswith("conf/") else home / m.group(1)
            assert path.parent.is_dir(), f"{where}: {m.group(1)}'s folder does not exist"
            path.write_text(body)
            previous = ""
        elif language == "bash":
            outputs = []
            for command in commands(body):
                expected = int(m.group(1)) if (m := EXIT.search(command)) else 0
                argv = shlex.split(command, comments=True)
                if in_process(argv) and not first_script:
                    code, output = run_in_process(argv, capfd)
                else:
                    first_script = first_script and argv[0] not in SCRIPTS
                    code, output = shell.run(command)
                ran[command] = (code, output)
                outputs.append(output)
                assert code == expected, f"{where}: `{command}` exited {code}, not {expected}:\n{output[-6000:]}"
            previous = "\n".join(outputs)
        elif language == "python":
            exec(compile("\n" * (line - 1) + body, str(DOC), "exec"), namespace)  # tracebacks show the page's lines
            previous = capfd.readouterr().out
        elif language == "text":
            assert previous, f"{where}: a text block follows no output"
            assert_shows(body, previous, where)
        else:
            raise AssertionError(f"{where}: the test does not know what to do with a {language} block")
    assert not first_script, "no cnnlab console script ran as a subprocess"

    # The receptive field the tools print is the page's hand derivation, and the runs recorded it.
    assert (namespace["size"], namespace["jump"]) == (38, 8)
    record = lambda run: json.loads((home / "outputs" / run / "metrics.json").read_text())  # noqa: E731
    for run in ("branchnet_tiny", "arrows", "arrows_folder", "arrows_streamed", "arrows_mix"):
        assert record(run)["status"] == "completed" and record(run)["receptive_field"] == 38, run
    assert record("branchnet_tiny")["params"] == 50_042 and record("arrows")["params"] == 49_364
    assert record("arrows_mix")["mixes_labels"] is True and record("arrows_mix")["choices"]["optim"] == "myrmsprop"

    # The search searched the model's own space, found its file, and ran both trials.
    summary = json.loads((home / "outputs/search_branchnet/optuna_summary.json").read_text())
    assert summary["trials_by_state"] == {"COMPLETE": 2}
    assert {"optim.lr", "optim.weight_decay", "model.width", "model.depth"} == set(summary["best"]["params"])
    search = next(out for cmd, (_, out) in ran.items() if "hparams_search=optuna" in cmd)
    assert "no search space of its own" not in search

    # Refusals: one line each, before the data loads and before any folder is made.
    refused = [(cmd, out) for cmd, (code, out) in ran.items() if code == 2]
    assert len(refused) == 6
    for command, output in refused:
        errors = [line for line in output.splitlines() if "ERROR" in line or line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in output, (command, output)
        assert "arrows: drawing" not in output, command
    assert not (home / "outputs" / "refused").exists()
    assert "3 passed" in next(out for cmd, (_, out) in ran.items() if "pytest" in cmd)
