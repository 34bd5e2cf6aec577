"""scripts/mutation.py (`make mutation GROUP=...`): each group's test selection names real tests, and the copy's
pyproject.toml differs from the checkout's only in that selection. mutmut itself is not run here (minutes)."""

import importlib.util
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
mutation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mutation)


def test_every_group_selects_test_files_that_exist_and_mutates_modules_of_only_mutate():
    only_mutate = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    assert set(mutation.GROUPS) == {"models", "report", "data", "runs"}
    for globs, selection in mutation.GROUPS.values():
        files = [a for a in selection if a.startswith("tests/")]
        assert files and all((ROOT / f).is_file() for f in files)
        for glob in globs:  # cnnlab.report.* → src/cnnlab/report/; cnnlab.runs* → src/cnnlab/runs.py
            folder = "src/" + glob.rstrip("*").rstrip(".").replace(".", "/")
            assert any(m.startswith(folder) for m in only_mutate), glob


def test_the_runs_group_leaves_out_exactly_the_trainings_of_test_train():
    (_, selection), text = mutation.GROUPS["runs"], (ROOT / "tests" / "test_train.py").read_text()
    left_out = re.findall(r"not (\w+)", selection[selection.index("-k") + 1])
    tests = re.findall(r"^def (test_\w+)", text, re.M)
    for name in left_out:  # each name picks out one test, and that test trains (a renamed one would slip in)
        (match,) = [t for t in tests if name in t]
        body = text.split(f"def {match}(", 1)[1].split("\ndef ", 1)[0]
        assert re.search(r"train_tiny|trained|cli\(|multirun|\brun\(", body), match


def test_the_copys_pyproject_differs_only_in_the_selection():
    original = (ROOT / "pyproject.toml").read_text()
    selection = ["tests/test_a.py", "-k", 'not "quoted" and not b']
    rewritten = mutation.with_selection(original, selection)
    assert tomllib.loads(rewritten)["tool"]["mutmut"]["pytest_add_cli_args_test_selection"] == selection
    changed = [(a, b) for a, b in zip(original.splitlines(), rewritten.splitlines()) if a != b]
    assert len(changed) == 1 and changed[0][0] == 'pytest_add_cli_args_test_selection = ["tests"]'


def test_an_unknown_group_is_one_line_and_exit_2(capsys):
    assert mutation.main(["model"]) == 2
    assert capsys.readouterr().err == (
        "error: GROUP=model is not a mutation group. Valid: models, report, data, runs, all. "
        "Fix: e.g. make mutation GROUP=models.\n"
    )
