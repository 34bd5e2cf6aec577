"""The comparison report (cnnlab-compare) on a hand-made sweep: every number traced back to the job that produced it.

The sweep is written by hand (.hydra/overrides.yaml, metrics.json with a curve), so every expected value
below is computed from the numbers in this file, not by the report code.
"""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Four depths × three seeds. depth 3 has the best mean *final* val acc, depth 2 the best mean *best* val acc
# (so sorting by the wrong column shows); depth 4 lost one seed; depth 5 failed on every seed.
FINAL = {2: [0.50, 0.60, 0.70], 3: [0.80, 0.84, 0.88], 4: [0.30, 0.40, None], 5: [None, None, None]}
BEST = {2: [0.95, 0.95, 0.95], 3: [0.85, 0.89, 0.93], 4: [0.35, 0.45, None], 5: [None, None, None]}
TEST = {2: [0.51, 0.61, 0.71], 3: [0.79, 0.83, 0.87], 4: [0.29, 0.39, None], 5: [None, None, None]}
PARAMS = {2: 1000, 3: 2000, 4: 3000, 5: None}
TRAIN_ACC = [0.40, 0.45]  # the train/acc curve written for job 0 (depth 2, seed 0): gap = 0.45 − 0.50 < 0


def jobs() -> list[tuple[int, int, int]]:
    """(job number, depth, seed) in the order Hydra numbers them: depth-major, 12 jobs (so 10 and 11 exist)."""
    return [(3 * i + seed, depth, seed) for i, depth in enumerate(FINAL) for seed in range(3)]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("handmade") / "sweep"
    for num, depth, seed in jobs():
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(
            yaml.safe_dump([f"model.depth={depth}", f"seed={seed}", "data=tiny"])
        )
        final = FINAL[depth][seed]
        if final is None:
            record = {"status": "failed", "error": f"depth {depth} does not fit", "seed": seed}
        else:
            record = {
                "status": "completed",
                "seed": seed,
                "val_acc_final": final,
                "val_acc_best": BEST[depth][seed],
                "test_acc": TEST[depth][seed],
                "params": PARAMS[depth],
                "receptive_field": 4 * depth,
                "epochs": 2 + seed,
                "wall_s": 10.25 + num,
            }
            if num == 0:  # the run's own per-epoch curves, as cnnlab-train records them
                record["curves"] = {"train/acc": TRAIN_ACC}
        (job / "metrics.json").write_text(json.dumps(record))
    return root


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory) -> Path:
    """Run the console script, as a user would."""
    out = tmp_path_factory.mktemp("report")
    exe = Path(sys.executable).with_name("cnnlab-compare")
    proc = subprocess.run([str(exe), str(sweep), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def table(summary_md: str) -> list[dict[str, str]]:
    """The markdown table as dicts, parsed independently of the writer."""
    lines = [line for line in summary_md.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def mean_std(values: list[float]) -> str:
    """'mean ± sample std' in %, written out by hand."""
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return f"{100 * m:.2f} ± {100 * s:.2f}"


def test_summary_is_sorted_by_mean_final_val_acc_best_first_and_failures_last(report):
    rows = table((report / "summary.md").read_text())
    # means of FINAL: depth 3 → 84 %, depth 2 → 60 %, depth 4 → 35 %, depth 5 → none
    assert [r["setting"] for r in rows] == ["model.depth=3", "model.depth=2", "model.depth=4", "model.depth=5"]


def test_summary_groups_the_seeds_of_each_setting_with_mean_and_std(report):
    rows = {r["setting"]: r for r in table((report / "summary.md").read_text())}
    assert rows["model.depth=2"]["val_acc_final"] == "60.00 ± 10.00"  # 50, 60, 70
    assert rows["model.depth=3"]["val_acc_final"] == "84.00 ± 4.00"  # 80, 84, 88
    assert rows["model.depth=4"]["val_acc_final"] == "35.00 ± 7.07"  # 30, 40: std = √(2·5²/1)
    for depth in (2, 3, 4):
        row, done = rows[f"model.depth={depth}"], [s for s in range(3) if FINAL[depth][s] is not None]
        assert row["val_acc_best"] == mean_std([BEST[depth][s] for s in done])
        assert row["test_acc"] == mean_std([TEST[depth][s] for s in done])
        assert row["jobs"] == f"{len(done)}/3" and row["params"] == str(PARAMS[depth])
        assert row["receptive_field"] == str(4 * depth) and row["epochs"] == str(2 + max(done))
        total = sum(10.25 + 3 * (depth - 2) + s for s in done)  # summed over seeds, shown to 0.1 s
        assert float(row["wall_s"]) == pytest.approx(round(total, 1))
    assert rows["model.depth=2"]["wall_s"] == "33.8"  # 10.25 + 11.25 + 12.25 = 33.75
    assert rows["model.depth=5"]["jobs"] == "0/3" and rows["model.depth=5"]["val_acc_final"] == "–"


def test_summary_lists_every_failed_job_with_its_error(report):
    summary = (report / "summary.md").read_text()
    failed = [(num, depth, seed) for num, depth, seed in jobs() if FINAL[depth][seed] is None]
    assert f"## Jobs that did not complete ({len(failed)})" in summary
    for num, depth, seed in failed:
        assert f"- `{num}` (model.depth={depth}, seed {seed}): failed: depth {depth} does not fit" in summary


def test_csv_has_one_row_per_job_in_job_order_with_the_jobs_own_numbers(report, sweep):
    rows = list(csv.DictReader(open(report / "summary.csv")))
    assert [Path(r["job"]).name for r in rows] == [str(n) for n in range(12)]  # 10 and 11 after 9, not after 1
    for row, (num, depth, seed) in zip(rows, jobs()):
        metrics = json.loads((sweep / str(num) / "metrics.json").read_text())
        assert (row["model.depth"], row["seed"], row["status"]) == (str(depth), str(seed), metrics["status"])
        for key in ("val_acc_final", "val_acc_best", "test_acc", "params", "epochs", "wall_s"):
            assert row[key] == (
                ""
                if key not in metrics
                else f"{metrics[key]:.6g}"
                if isinstance(metrics[key], float)
                else str(metrics[key])
            ), (num, key)


def test_train_val_gap_is_last_train_acc_minus_final_val_acc(report):
    rows = list(csv.DictReader(open(report / "summary.csv")))
    assert float(rows[0]["train_val_gap"]) == pytest.approx(0.45 - 0.50, abs=1e-6)  # TRAIN_ACC[-1] − FINAL[2][0]
    assert rows[1]["train_val_gap"] == ""  # no curve, no gap
    md = {r["setting"]: r for r in table((report / "summary.md").read_text())}
    assert md["model.depth=2"]["train_val_gap"] == "-5.00"  # one job with a curve: no ± part
