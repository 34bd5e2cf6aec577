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

from cnnlab.report.collect import Job, collect_jobs, swept_axes
from cnnlab.report.compare import compare as write_report
from cnnlab.report.gain import capacity_axes, gain_rows, has_baseline, pair_runs
from cnnlab.report.tables import gain_markdown

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
                "curves": {"train/acc": [0.3, TRAIN_ACC[aug]], "val/acc": [0.2, test - 0.01]}
                | {"train/loss": [2.0, 1.0], "val/loss": [2.1, 1.2]},
            }
        )
        (job / "metrics.json").write_text(json.dumps(record))
    return root


def compare(sweep: Path, out: Path) -> Path:
    """cnnlab-compare's report, written in this process (test_report.py checks that the console script writes
    the same files), so mutation testing sees which tests reach the report code."""
    write_report([sweep], out)
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("handmade") / "sweep")


@pytest.fixture
def gain_report(sweep, tmp_path) -> Path:
    """Function-scoped: a module-scoped report would credit the report code to its first test only."""
    return compare(sweep, tmp_path / "report")


def gain_csv(report: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["model.width"], r["data.train_subset"]): r for r in csv.DictReader(open(report / "aug_gain.csv"))}


def gain_section(summary_md: str) -> list[dict[str, str]]:
    """The markdown table under '## Augmentation gain', parsed independently of the writer."""
    section = summary_md.split("## Augmentation gain", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def test_gain_is_the_mean_over_seeds_of_augmented_minus_unaugmented_test_accuracy(gain_report):
    rows = gain_csv(gain_report)
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


def test_spread_is_the_sample_std_over_seeds_of_the_per_seed_gains(gain_report):
    rows = gain_csv(gain_report)
    assert float(rows["8", "5000"]["gain_std"]) == pytest.approx(0.02)  # √((2² + 0² + 2²) / 2) points
    assert float(rows["32", "5000"]["gain_std"]) == pytest.approx(0.02)  # not the population std, √(8/3) = 1.63
    assert float(rows["32", "null"]["gain_std"]) == pytest.approx(math.sqrt(2 * 0.005**2))  # 0.0071, n − 1 = 1
    assert (rows["32", "null"]["pairs"], rows["32", "null"]["seeds"]) == ("2", "0 2")
    section = {r["setting"]: r for r in gain_section((gain_report / "summary.md").read_text())}
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


def test_the_report_lists_what_it_wrote_tables_first_and_puts_the_gain_section_after_the_summary(sweep, tmp_path):
    """compare()'s return value is what cnnlab-compare prints as written: every table, then every plot."""
    out = tmp_path / "report"
    names = ["summary.csv", "summary.md", "aug_gain.csv", "val_acc_vs_epoch.png", "loss_curves.png"]
    names += ["acc_by_axis.png", "aug_gain.png"]
    assert write_report([sweep], out) == [out / name for name in names]
    assert all((out / name).stat().st_size > 0 for name in names)
    text = (out / "summary.md").read_text()
    assert text.startswith("# Sweep summary (24 jobs)\n")  # 2 policies × 2 widths × 2 subsets × 3 seeds
    # after the summary table and the failed job's line, one blank line between
    assert text.index("## Jobs that did not complete (1)") < text.index("\n\n## Augmentation gain\n\n")


def test_gain_plot_and_table_are_written_only_when_augment_has_a_none_level(gain_report, tmp_path):
    assert (gain_report / "aug_gain.png").stat().st_size > 5000
    assert "![aug_gain.png](aug_gain.png)" in (gain_report / "summary.md").read_text()
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


# make test keeps the handmade sweep's gain tests (test_gain_is_the_mean_over_seeds_of_augmented_minus_unaugmented_
# test_accuracy, ...) and test_sweep's real multirun (test_every_job_gets_its_own_directory_and_metrics)
@pytest.mark.slow
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


# --- gain_rows and has_baseline in this process ------------------------------------------------------------------

SWEPT = ["augment", "data.train_subset", "model.width"]


def gain_row(width: int, subset: str, seeds: str, test: float, base: float, gain: float, std, gap, base_gap) -> dict:
    """The row gain_rows should give for crop_flip at (width, subset), every number passed in worked out by hand."""
    return {
        "setting": f"augment=crop_flip data.train_subset={subset} model.width={width}",
        "baseline": f"augment=none data.train_subset={subset} model.width={width}",
        "augment": "crop_flip",
        "data.train_subset": subset,
        "model.width": str(width),
        "params": PARAMS[width],
        "seeds": seeds,
        "pairs": len(seeds.split()),
        "test_acc": pytest.approx(test),
        "baseline_test_acc": pytest.approx(base),
        "gain": pytest.approx(gain, abs=1e-12),
        "gain_std": pytest.approx(std, abs=1e-12),
        "train_val_gap": pytest.approx(gap),
        "baseline_train_val_gap": pytest.approx(base_gap),
    }


def test_gain_rows_give_each_augmented_setting_its_paired_seeds_mean_gain_and_sample_std(sweep):
    """In-process gain_rows on the hand-made sweep: every column of every row, rows by subset then parameter count."""
    jobs = collect_jobs([sweep])
    assert swept_axes(jobs) == SWEPT
    # gap = TRAIN_ACC − (test − 0.01), averaged over the paired seeds: crop_flip 0.70, none 0.95
    assert gain_rows(jobs, SWEPT) == [
        gain_row(8, "5000", "0 1 2", 0.45, 0.42, 0.03, 0.02, 0.70 - 0.44, 0.95 - 0.41),
        gain_row(32, "5000", "0 1 2", 0.60, 0.50, 0.10, 0.02, 0.70 - 0.59, 0.95 - 0.49),
        gain_row(8, "null", "0 1 2", 0.61, 0.61, 0.0, 0.0, 0.70 - 0.60, 0.95 - 0.60),
        # seed 1's twin failed: only seeds 0 and 2, on both sides (0.75 and 0.80; 0.70 and 0.74)
        gain_row(32, "null", "0 2", 0.775, 0.72, 0.055, math.sqrt(2 * 0.005**2), 0.70 - 0.765, 0.95 - 0.71),
    ]


def run(name: str, overrides: dict[str, str], test_acc: float | None, status="completed", train_acc=None, **record):
    """A job built in memory; train_acc is the last point of its train/acc curve."""
    metrics = {"status": status, **({} if test_acc is None else {"test_acc": test_acc}), **record}
    return Job(Path(name), overrides, metrics, {} if train_acc is None else {"train/acc": [0.1, train_acc]})


def aug(policy: str, seed: int, other: dict[str, str] | None = None) -> dict[str, str]:
    """Overrides of a run: its augment policy, any other swept values, its seed."""
    return {"augment": policy, **(other or {}), "seed": str(seed)}


def test_has_baseline_needs_augment_swept_and_a_none_run():
    """augment must be a swept axis and one job must have augment=none."""
    both = [run("0", aug("none", 0), 0.5), run("1", aug("crop_flip", 0), 0.6)]
    assert has_baseline(both, ["augment"]) and has_baseline(both, ["model.width", "augment"])
    assert not has_baseline(both, ["model.width"])  # augment not swept
    assert not has_baseline([run("0", aug("cutout", 0), 0.5), run("1", aug("crop_flip", 0), 0.6)], ["augment"])
    assert not has_baseline([], ["augment"])


def test_a_single_seed_gives_its_own_difference_as_the_gain_and_no_std():
    """One pair: gain = augmented − none test acc, gain_std None; no train/acc curves: both gaps None."""
    jobs = [run("0", aug("none", 0), 0.40, params=500), run("1", aug("crop_flip", 0), 0.47, params=500)]
    assert gain_rows(jobs, ["augment"]) == [
        {
            "setting": "augment=crop_flip",
            "baseline": "augment=none",
            "augment": "crop_flip",
            "params": 500,
            "seeds": "0",
            "pairs": 1,
            "test_acc": 0.47,
            "baseline_test_acc": 0.40,
            "gain": pytest.approx(0.07),
            "gain_std": None,
            "train_val_gap": None,
            "baseline_train_val_gap": None,
        }
    ]


def test_gain_is_the_mean_and_gain_std_the_sample_std_of_the_per_seed_differences():
    """Three seeds, each augmented run minus the none run of its own seed: 0.11, 0.14, 0.20."""
    nones = [run(f"n{seed}", aug("none", seed), acc) for seed, acc in enumerate((0.50, 0.40, 0.60))]
    crops = [run(f"c{seed}", aug("crop_flip", seed), acc) for seed, acc in enumerate((0.61, 0.54, 0.80))]
    (row,) = gain_rows(crops + nones, ["augment"])
    assert (row["seeds"], row["pairs"]) == ("0 1 2", 3)
    assert row["gain"] == pytest.approx(0.15)  # (0.11 + 0.14 + 0.20) / 3; the median would be 0.14
    # deviations −0.04, −0.01, +0.05: √((0.0016 + 0.0001 + 0.0025) / 2) = 0.0458 (population std: 0.0374)
    assert row["gain_std"] == pytest.approx(math.sqrt(0.0042 / 2))
    assert (row["test_acc"], row["baseline_test_acc"]) == (pytest.approx(0.65), pytest.approx(0.50))


def test_failed_runs_runs_without_test_acc_and_runs_without_a_twin_are_not_paired():
    """Only completed runs with a test acc pair up; an augmented run whose twin is missing or unusable is dropped."""
    jobs = [
        run("n0", aug("none", 0), 0.50),
        run("n1", aug("none", 1), 0.60),
        run("n2", aug("none", 2), 0.40),
        run("n4", aug("none", 4), 0.90, status="failed"),  # a test acc in a failed record is not trusted
        run("n5", aug("none", 5), None),  # completed, no test acc
        run("n6", aug("none", 6), 0.30),
        run("c0", aug("crop_flip", 0), 0.55),
        run("c1", aug("crop_flip", 1), 0.99, status="failed"),
        run("c2", aug("crop_flip", 2), 0.48),
        run("c3", aug("crop_flip", 3), 0.70),  # no none run for seed 3
        run("c4", aug("crop_flip", 4), 0.80),  # its twin failed
        run("c5", aug("crop_flip", 5), 0.70),  # its twin has no test acc
        run("c6", aug("crop_flip", 6), None),
    ]
    assert [(p.augmented.path.name, p.baseline.path.name, p.seed) for p in pair_runs(jobs, ["augment"])] == [
        ("c0", "n0", "0"),
        ("c2", "n2", "2"),
    ]
    (row,) = gain_rows(jobs, ["augment"])
    assert (row["seeds"], row["pairs"]) == ("0 2", 2)
    assert row["gain"] == pytest.approx(0.065)  # (0.05 + 0.08) / 2
    assert row["gain_std"] == pytest.approx(math.sqrt(2 * 0.015**2))  # sample std: 0.0212, not 0.015
    assert (row["test_acc"], row["baseline_test_acc"]) == (pytest.approx(0.515), pytest.approx(0.45))


def test_the_twin_has_the_same_value_on_every_other_swept_axis_and_the_same_seed():
    """A none run differing in width, lr or seed is not the twin; a missing axis ('-') and a record's seed match."""
    axes = ["augment", "model.width", "optim.lr"]
    jobs = [
        run("none-8-0.1-s0", aug("none", 0, {"model.width": "8", "optim.lr": "0.1"}), 0.50),
        run("none-8-0.01-s0", aug("none", 0, {"model.width": "8", "optim.lr": "0.01"}), 0.30),
        run("none-16-0.1-s0", aug("none", 0, {"model.width": "16", "optim.lr": "0.1"}), 0.70),
        run("none-8-0.1-s1", aug("none", 1, {"model.width": "8", "optim.lr": "0.1"}), 0.20),
        run("none-16-s0", aug("none", 0, {"model.width": "16"}), 0.65),
        run("crop-8-0.1-s0", aug("crop_flip", 0, {"model.width": "8", "optim.lr": "0.1"}), 0.56),
        run("crop-16-s0", aug("crop_flip", 0, {"model.width": "16"}), 0.75),
        run("crop-8-0.01", {"augment": "crop_flip", "model.width": "8", "optim.lr": "0.01"}, 0.33, seed=0),
        run("no-augment", {"model.width": "8", "optim.lr": "0.1", "seed": "0"}, 0.99),  # not an augmented run
    ]
    pairs = {p.augmented.path.name: p.baseline.path.name for p in pair_runs(jobs, axes)}
    assert pairs == {"crop-8-0.1-s0": "none-8-0.1-s0", "crop-16-s0": "none-16-s0", "crop-8-0.01": "none-8-0.01-s0"}
    rows = {r["setting"]: r for r in gain_rows(jobs, axes)}
    assert {s: (r["baseline"], r["gain"]) for s, r in rows.items()} == {
        "augment=crop_flip model.width=8 optim.lr=0.1": (
            "augment=none model.width=8 optim.lr=0.1",
            pytest.approx(0.06),
        ),
        "augment=crop_flip model.width=16 optim.lr=-": ("augment=none model.width=16 optim.lr=-", pytest.approx(0.10)),
        "augment=crop_flip model.width=8 optim.lr=0.01": (
            "augment=none model.width=8 optim.lr=0.01",
            pytest.approx(0.03),
        ),
    }
    assert rows["augment=crop_flip model.width=8 optim.lr=0.01"]["seeds"] == "0"  # the record's seed
    assert rows["augment=crop_flip model.width=16 optim.lr=-"]["optim.lr"] == "-"  # the row's own value column too


def test_a_repeated_baseline_is_the_first_one_and_the_repeat_is_named_in_a_warning(caplog):
    """Two none runs with the same setting and seed: the first (in job order) is the twin, and a warning says so."""
    jobs = [run("first", aug("none", 0), 0.50), run("again", aug("none", 0), 0.10), run("c", aug("crop_flip", 0), 0.60)]
    (row,) = gain_rows(jobs, ["augment"])
    assert row["gain"] == pytest.approx(0.10) and row["baseline_test_acc"] == 0.50
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["again repeats the setting and seed of first; the first is the baseline"]


def test_train_val_gap_columns_average_last_train_acc_minus_final_val_acc_over_the_pairs_that_have_both():
    """Each side's gap: mean over the paired runs that have a train/acc curve and a final val acc, others skipped."""
    jobs = [
        run("c0", aug("crop_flip", 0), 0.6, train_acc=0.80, val_acc_final=0.60),  # 0.20
        run("c1", aug("crop_flip", 1), 0.6, train_acc=0.90, val_acc_final=0.60),  # 0.30
        run("c2", aug("crop_flip", 2), 0.6, val_acc_final=0.60),  # no curve
        run("n0", aug("none", 0), 0.5, train_acc=0.99, val_acc_final=0.50),  # 0.49
        run("n1", aug("none", 1), 0.5, train_acc=0.99),  # no final val acc
        run("n2", aug("none", 2), 0.5, train_acc=0.95, val_acc_final=0.40),  # 0.55
        run("n3", aug("none", 3), 0.5, train_acc=0.10, val_acc_final=0.90),  # not paired: not counted
    ]
    (row,) = gain_rows(jobs, ["augment"])
    assert row["pairs"] == 3
    assert row["train_val_gap"] == pytest.approx(0.25) and row["baseline_train_val_gap"] == pytest.approx(0.52)


def test_rows_are_grouped_by_policy_and_the_other_axes_then_ordered_by_parameter_count():
    """Order: augment, then non-capacity axes in numeric order (words last), then params (None first), not width."""
    params = {"16": 2_000, "8": 3_000, "4": None}  # width 16 smaller than width 8 here: params, not width, order
    combos = [
        (policy, subset, width)
        for policy in ("cutout", "crop_flip")
        for subset in ("10000", "5000", "null")
        for width in ("4", "8", "16")
        if subset != "null" or width == "8"
    ]
    jobs = []
    for policy, subset, width in reversed(combos):
        other = {"data.train_subset": subset, "model.width": width}
        for name in (policy, "none"):
            jobs.append(
                run(f"{name}-{subset}-{width}", {"augment": name, **other, "seed": "0"}, 0.5, params=params[width])
            )
    rows = gain_rows(jobs, SWEPT)
    order = [(r["augment"], r["data.train_subset"], r["model.width"], r["params"]) for r in rows]
    assert order == [
        (policy, subset, width, params[width])
        for policy in ("crop_flip", "cutout")
        for subset, widths in (("5000", ("4", "16", "8")), ("10000", ("4", "16", "8")), ("null", ("8",)))
        for width in widths
    ]


def test_capacity_axes_are_the_swept_model_dot_axes_not_the_model_choice():
    """model.width and model.depth are capacity (plotted via params); the model group choice and others are lines."""
    axes = ["augment", "model", "model.depth", "data.train_subset", "model.width"]
    assert capacity_axes(axes) == ["model.depth", "model.width"]


def test_gain_markdown_writes_points_with_signs_spreads_and_dashes_for_missing_numbers():
    """The section's exact lines: gain signed with its spread, accuracies and gaps in points, '–' for a missing
    number, an empty cell for missing params."""
    rows = [
        {"setting": "augment=crop_flip model.width=8", "baseline": "augment=none model.width=8", "params": 6000}
        | {"seeds": "0 1", "test_acc": 0.4512, "baseline_test_acc": 0.42, "gain": 0.0312, "gain_std": 0.02}
        | {"train_val_gap": 0.26, "baseline_train_val_gap": -0.015},
        {"setting": "augment=cutout model.width=8", "baseline": "augment=none model.width=8", "params": None}
        | {"seeds": "0", "test_acc": 0.40, "baseline_test_acc": 0.42, "gain": -0.02, "gain_std": None}
        | {"train_val_gap": None, "baseline_train_val_gap": None},
    ]
    lines = gain_markdown(rows)
    assert lines[0] == "## Augmentation gain" and lines[1] == "" and lines[3] == ""
    assert lines[2] == (
        "Test accuracy of each augmented setting minus that of its augment=none twin (same values on every other "
        "axis), paired seed by seed: gain = mean ± sample std over seeds of the per-seed differences, in points. "
        "Train–val gaps use train accuracy on the (augmented) training batches."
    )
    assert lines[4:] == [
        "| setting | compared with | params | seeds | test_acc | test_acc (none) | gain | train_val_gap | "
        "train_val_gap (none) |",
        "|---|---|---|---|---|---|---|---|---|",
        "| augment=crop_flip model.width=8 | augment=none model.width=8 | 6000 | 0 1 | 45.12 | 42.00 | +3.12 ± 2.00 "
        "| 26.00 | -1.50 |",
        "| augment=cutout model.width=8 | augment=none model.width=8 |  | 0 | 40.00 | 42.00 | -2.00 | – | – |",
    ]


def test_jobs_without_a_seed_pair_as_one_unnamed_seed_and_a_records_seed_counts():
    """seed_of: the override, else the record's seed, else '' (an unseeded pair still pairs, with an empty seed)."""
    unseeded = [run("n", {"augment": "none"}, 0.40), run("c", {"augment": "crop_flip"}, 0.45)]
    (row,) = gain_rows(unseeded, ["augment"])
    assert (row["seeds"], row["pairs"]) == ("", 1)
    from_record = [run("n", {"augment": "none"}, 0.40, seed=7), run("c", {"augment": "crop_flip"}, 0.45, seed=7)]
    assert gain_rows(from_record, ["augment"])[0]["seeds"] == "7"
