"""`make mutation GROUP=...`: mutmut on one group of modules against the test files that own them.

mutmut reads its test selection only from pyproject.toml, so each group runs in its own copy of the tree,
`mutants/<group>/`, whose pyproject.toml names that group's tests; the checkout's pyproject.toml is never edited.
GROUP=all runs every module of `[tool.mutmut] only_mutate` against the whole suite, in the checkout (hours).
The groups and their selections are those of docs/testing.md's campaign 4. Extra arguments are mutmut's globs over
mutant names, e.g. `make mutation GROUP=report ARGS='cnnlab.report.tables*'`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# group → (mutant-name globs, pytest arguments): the owning test files, without trainings (each mutant reruns
# the tests that reach it, and a training per mutant would take hours)
GROUPS = {
    "models": (
        ["cnnlab.models.*"],
        ["tests/test_models.py", "tests/test_models_pinned.py", "tests/test_receptive_field.py", "tests/test_fast.py"]
        + ["-k", "not recipe"],
    ),
    "report": (
        ["cnnlab.report.*"],
        ["tests/test_report.py", "tests/test_report_figures.py", "tests/test_aug_gain.py", "-k", "not tiny_data"],
    ),
    "data": (
        ["cnnlab.augment.*", "cnnlab.data.*"],
        ["tests/test_augment.py", "tests/test_data.py", "tests/test_sampling.py", "tests/test_tiny_pictures.py"],
    ),
    "runs": (
        ["cnnlab.runs*"],
        ["tests/test_train.py", "-k"]
        + [
            "not two_epochs and not writes_tensorboard and not lab_images and not eval_round_trip and not same_seed "
            "and not cli_bad_value and not refuses_to_overwrite and not ddp_simulation and not last_checkpoint "
            "and not eval_into and not few_steps"
        ],
    ),
}
SELECTION = re.compile(r"^pytest_add_cli_args_test_selection = .*$", re.M)
COPIED = ("src", "tests", "conf", "docs")


def with_selection(pyproject: str, selection: list[str]) -> str:
    """pyproject.toml's text with mutmut's test selection replaced (a JSON list of strings is a TOML array)."""
    if not SELECTION.search(pyproject):
        raise SystemExit("error: pyproject.toml has no pytest_add_cli_args_test_selection line under [tool.mutmut].")
    return SELECTION.sub(lambda _: f"pytest_add_cli_args_test_selection = {json.dumps(selection)}", pyproject)


def prepare(group: str) -> Path:
    """A fresh copy of the tree for `group` under mutants/, with its selection; returns its folder."""
    work = ROOT / "mutants" / group
    for name in COPIED:
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "pyproject.toml").write_text(with_selection((ROOT / "pyproject.toml").read_text(), GROUPS[group][1]))
    return work


def run(work: Path, globs: list[str]) -> int:
    """mutmut run (one worker, one OpenMP thread, a fresh test map), then its results and each survivor's diff."""
    mutmut = Path(sys.executable).with_name("mutmut")
    # must exist when Python starts, or its import cache skips the PYTHONPATH entry for good
    (work / "mutants" / "src").mkdir(parents=True, exist_ok=True)
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # a kept test map never sees new tests
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(work / "mutants" / "src")}
    code = subprocess.call([str(mutmut), "run", "--max-children", "1", *globs], cwd=work, env=env)
    results = subprocess.run([str(mutmut), "results"], cwd=work, env=env, capture_output=True, text=True).stdout
    survivors = [line.split(":")[0].strip() for line in results.splitlines() if line.strip().endswith(": survived")]
    for name in survivors:
        print(subprocess.run([str(mutmut), "show", name], cwd=work, env=env, capture_output=True, text=True).stdout)
    print(f"{len(survivors)} survived" + (f" (diffs above): {', '.join(survivors)}" if survivors else ""))
    return code


def main(argv: list[str]) -> int:
    """Run one group (or all) and return mutmut's exit code."""
    if not argv or argv[0] not in (*GROUPS, "all"):
        given = argv[0] if argv else "nothing"
        sys.stderr.write(
            f"error: GROUP={given} is not a mutation group. Valid: {', '.join(GROUPS)}, all. "
            "Fix: e.g. make mutation GROUP=models.\n"
        )
        return 2
    group, globs = argv[0], argv[1:]
    if group == "all":
        return run(ROOT, globs)
    return run(prepare(group), globs or GROUPS[group][0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
