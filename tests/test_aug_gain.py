"""The augmentation-gain report (cnnlab-compare on a sweep that varies augment with a none level): each augmented
run paired with its augment=none twin, gain = mean ± sample std over seeds of the per-seed differences.

The sweep is written by hand, so every expected number below is worked out from the numbers in this file.
"""

import csv
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnlab.report.collect import collect_jobs, swept_axes
from cnnlab.report.gain import pair_runs

AUGMENTS, WIDTHS, SUBSETS, SEEDS = ("crop_flip", "none"), (8, 32), ("5000", "null"), (0, 1, 2)
# Test accuracy per (augment, width, train_subset), seeds 0, 1, 2; None: the job failed.
TEST = {
    ("none", 8, "5000"): [0.40, 0.42, 0.44],
    ("crop_flip", 8, "5000"): [0.41, 0.45, 0.49],  # per-seed gains 1, 3, 5 points: mean 3, sample std 2
    ("none", 32, "5000"): [0.50, 0.52, 0.48],
    ("crop_flip", 32, "5000"): [0.60, 0.60, 0.60],  # gains 10, 8, 12: mean 10, std 2
    ("none", 8, "null"): [0.60, 0.61, 0.62],
    ("crop_flip", 8, "null"): [0.60, 0.61, 0.62],  # gains 0, 0, 0
    ("none", 32, "null"): [0.70, None, 0.74],
    ("crop_flip", 32, "null"): [0.75, 0.80, 0.80],  # seed 1 has no twin: gains 5, 6 → mean 5.5, std √(2·0.5²)
}
PARAMS = {8: 6_000, 32: 95_000}
TRAIN_ACC = {"none": 0.95, "crop_flip": 0.70}  # last epoch's train accuracy; final val acc = test acc − 0.01


def job_list() -> list[tuple[int, str, int, str, int]]:
    """(job number, augment, width, subset, seed); crop_flip before none, so a twin is never the job before."""
    combos = itertools.product(WIDTHS, SUBSETS, AUGMENTS, SEEDS)
    return [(num, aug, width, subset, seed) for num, (width, subset, aug, seed) in enumerate(combos)]


def write_sweep(root: Path, keep=lambda aug, width, subset, seed: True) -> Path:
    for num, aug, width, subset, seed in job_list():
        if not keep(aug, width, subset, seed):
            continue
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        overrides = [f"augment={aug}", f"model.width={width}", f"data.train_subset={subset}", f"seed={seed}"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        test = TEST[(aug, width, subset)][seed]
        record = (
            {"status": "failed", "error": "NaN loss", "seed": seed}
            if test is None
            else {
                "status": "completed",
                "seed": seed,
                "test_acc": test,
                "val_acc_final": test - 0.01,
                "val_acc_best": test,
                "params": PARAMS[width],
                "curves": {"train/acc": [0.3, TRAIN_ACC[aug]]},
            }
        )
        (job / "metrics.json").write_text(json.dumps(record))
    return root


def compare(sweep: Path, out: Path) -> Path:
    """Run the console script, as a user would."""
    exe = Path(sys.executable).with_name("cnnlab-compare")
    proc = subprocess.run([str(exe), str(sweep), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("handmade") / "sweep")


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory) -> Path:
    return compare(sweep, tmp_path_factory.mktemp("report"))


def gain_csv(report: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["model.width"], r["data.train_subset"]): r for r in csv.DictReader(open(report / "aug_gain.csv"))}


def gain_section(summary_md: str) -> list[dict[str, str]]:
    """The markdown table under '## Augmentation gain', parsed independently of the writer."""
    section = summary_md.split("## Augmentation gain", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_gain_is_the_mean_over_seeds_of_augmented_minus_unaugmented_test_accuracy(report):
    rows = gain_csv(report)
    assert set(rows) == {("8", "5000"), ("32", "5000"), ("8", "null"), ("32", "null")}  # crop_flip settings only
    assert {r["augment"] for r in rows.values()} == {"crop_flip"}
    assert float(rows["8", "5000"]["gain"]) == pytest.approx(0.03)  # (0.01 + 0.03 + 0.05) / 3
    assert float(rows["32", "5000"]["gain"]) == pytest.approx(0.10)  # (0.10 + 0.08 + 0.12) / 3
    assert float(rows["8", "null"]["gain"]) == pytest.approx(0.0, abs=1e-9)
    assert float(rows["32", "null"]["gain"]) == pytest.approx(0.055)  # seeds 0 and 2: (0.05 + 0.06) / 2
    assert float(rows["32", "5000"]["test_acc"]) == pytest.approx(0.60)
    assert float(rows["32", "5000"]["baseline_test_acc"]) == pytest.approx(0.50)  # (0.50 + 0.52 + 0.48) / 3
    assert float(rows["32", "null"]["baseline_test_acc"]) == pytest.approx(0.72)  # (0.70 + 0.74) / 2
    # train–val gap = last train acc − final val acc = TRAIN_ACC − (test − 0.01): 0.70 − 0.59 and 0.95 − 0.49
    assert float(rows["32", "5000"]["train_val_gap"]) == pytest.approx(0.11)
    assert float(rows["32", "5000"]["baseline_train_val_gap"]) == pytest.approx(0.46)


def test_spread_is_the_sample_std_over_seeds_of_the_per_seed_gains(report):
    rows = gain_csv(report)
    assert float(rows["8", "5000"]["gain_std"]) == pytest.approx(0.02)  # √((2² + 0² + 2²) / 2) points
    assert float(rows["32", "5000"]["gain_std"]) == pytest.approx(0.02)  # not the population std, √(8/3) = 1.63
    assert float(rows["32", "null"]["gain_std"]) == pytest.approx(math.sqrt(2 * 0.005**2))  # 0.0071, n − 1 = 1
    assert (rows["32", "null"]["pairs"], rows["32", "null"]["seeds"]) == ("2", "0 2")
    section = {r["setting"]: r for r in gain_section((report / "summary.md").read_text())}
    setting = "augment=crop_flip data.train_subset=5000 model.width=8"
    assert section[setting]["gain"] == "+3.00 ± 2.00"
    assert section[setting]["compared with"] == "augment=none data.train_subset=5000 model.width=8"
    assert section["augment=crop_flip data.train_subset=null model.width=32"]["gain"] == "+5.50 ± 0.71"


def test_each_augmented_run_is_compared_with_the_none_run_of_its_seed_and_other_axes(sweep):
    jobs = collect_jobs([sweep])
    pairs = {int(p.augmented.path.name): int(p.baseline.path.name) for p in pair_runs(jobs, swept_axes(jobs))}
    number = {(aug, width, subset, seed): num for num, aug, width, subset, seed in job_list()}
    expected = {
        number["crop_flip", width, subset, seed]: number["none", width, subset, seed]
        for width, subset, seed in itertools.product(WIDTHS, SUBSETS, SEEDS)
        if TEST["none", width, subset][seed] is not None
    }
    assert pairs == expected and len(pairs) == 11  # 12 augmented runs; one twin failed
    assert number["crop_flip", 32, "null", 1] not in pairs


def test_gain_plot_and_table_are_written_only_when_augment_has_a_none_level(report, tmp_path):
    assert (report / "aug_gain.png").stat().st_size > 5000
    assert "![aug_gain.png](aug_gain.png)" in (report / "summary.md").read_text()
    no_baseline = write_sweep(tmp_path / "no_none", keep=lambda aug, width, subset, seed: aug != "none")
    one_policy = write_sweep(tmp_path / "one_policy", keep=lambda aug, width, subset, seed: aug == "none")
    for sweep in (no_baseline, one_policy):  # augment=crop_flip only; augment=none only (not swept)
        out = compare(sweep, tmp_path / f"{sweep.name}_report")
        assert not (out / "aug_gain.png").exists() and not (out / "aug_gain.csv").exists()
        assert "Augmentation gain" not in (out / "summary.md").read_text()
        assert (out / "acc_by_axis.png").exists()  # the rest of the report as before


def test_one_seed_gives_a_gain_without_spread_and_an_unpaired_setting_no_row(tmp_path):
    def keep(aug, width, subset, seed):  # width 8, seed 0; crop_flip on the full set left out
        return width == 8 and seed == 0 and not (aug == "crop_flip" and subset == "null")

    out = compare(write_sweep(tmp_path / "sweep", keep), tmp_path / "report")
    rows = list(csv.DictReader(open(out / "aug_gain.csv")))
    assert [(r["augment"], r["data.train_subset"], r["seeds"]) for r in rows] == [("crop_flip", "5000", "0")]
    assert float(rows[0]["gain"]) == pytest.approx(0.01) and rows[0]["gain_std"] == ""  # 0.41 − 0.40, one seed
    assert "| +1.00 |" in (out / "summary.md").read_text()


def test_augmentation_lab_on_tiny_data_gives_the_gain_table_through_cnnlab_compare(tmp_path):
    sweep = tmp_path / "lab"
    axes = ["augment=none,crop_flip", "model.width=4,8", "data.train_subset=300", "seed=0"]  # 4 of the 36 jobs
    tiny = ["data=tiny", "data.train_count=600", "data.val_size=100", "trainer.max_epochs=1", "progress_bar=false"]
    exe = Path(sys.executable).with_name("cnnlab-train")
    args = [str(exe), "-m", "experiment=augmentation_lab", *axes, *tiny, "logger=none", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(compare(sweep, tmp_path / "report") / "aug_gain.csv")))
    assert [(r["augment"], r["model.width"], r["seeds"]) for r in rows] == [
        ("crop_flip", "4", "0"),
        ("crop_flip", "8", "0"),
    ]
    test_acc = {}  # (augment, width) → test acc, from each job's own files
    for job in sweep.glob("[0-9]*"):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        test_acc[overrides["augment"], overrides["model.width"]] = json.loads((job / "metrics.json").read_text())[
            "test_acc"
        ]
    for row in rows:
        gain = test_acc["crop_flip", row["model.width"]] - test_acc["none", row["model.width"]]
        assert float(row["gain"]) == pytest.approx(gain, abs=1e-5) and row["gain_std"] == ""  # one seed: no spread
    assert (tmp_path / "report" / "aug_gain.png").stat().st_size > 5000
