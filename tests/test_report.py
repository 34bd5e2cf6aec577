"""The comparison report (cnnlab-compare) on a hand-made sweep: every number traced back to the job that produced it.

The sweep is written by hand (.hydra/overrides.yaml, metrics.json with a curve), so every expected value
below is computed from the numbers in this file, not by the report code.
"""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import cnnlab_compare
from cnnlab.errors import CnnlabError
from cnnlab.report.collect import collect_jobs, read_overrides
from cnnlab.report.compare import compare

# Four depths × three seeds. depth 3 has the best mean *final* val acc, depth 2 the best mean *best* val acc
# (so sorting by the wrong column shows); depth 4 lost one seed; depth 5 failed on every seed.
FINAL = {2: [0.50, 0.60, 0.70], 3: [0.80, 0.84, 0.88], 4: [0.30, 0.40, None], 5: [None, None, None]}
BEST = {2: [0.95, 0.95, 0.95], 3: [0.85, 0.89, 0.93], 4: [0.35, 0.45, None], 5: [None, None, None]}
TEST = {2: [0.51, 0.61, 0.71], 3: [0.79, 0.83, 0.87], 4: [0.29, 0.39, None], 5: [None, None, None]}
PARAMS = {2: 1000, 3: 2000, 4: 3000, 5: None}
TRAIN_ACC = [0.40, 0.42, 0.45]  # the train/acc curve written for job 0 (depth 2, seed 0): gap = 0.45 − 0.50 < 0


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


@pytest.fixture
def report(sweep, tmp_path_factory) -> Path:
    """Run cnnlab-compare's entry point in this process, once per test (0.1 s): mutation testing credits the
    report code to each test that runs it, which a module-scoped fixture would hide from all but the first.
    The console script's own run is checked once, below."""
    out = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.argv", ["cnnlab-compare", str(sweep), "--out", str(out)])
        cnnlab_compare()
    return out


def test_the_console_script_writes_the_same_report_and_prints_it(report, sweep, tmp_path):
    exe = Path(sys.executable).with_name("cnnlab-compare")
    proc = subprocess.run([str(exe), str(sweep), "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("summary.md", "summary.csv"):
        assert (tmp_path / name).read_text() == (report / name).read_text()
    assert proc.stdout.startswith((report / "summary.md").read_text())


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
        assert row["error"] == metrics.get("error", "")


def test_csv_columns_are_the_job_the_swept_values_the_seed_then_the_numbers_one_row_per_line(report):
    raw = (report / "summary.csv").read_bytes()
    header = (
        "job,model.depth,seed,params,macs,receptive_field,val_acc_final,val_acc_best,test_acc,test_consistency,"
        "train_val_gap,epochs,wall_s"
    )
    assert raw.decode().splitlines()[0] == header + ",status,error"
    assert b"\r" not in raw and raw.count(b"\n") == 1 + 12  # header and 12 jobs, Unix line ends


def test_train_val_gap_is_last_train_acc_minus_final_val_acc(report):
    rows = list(csv.DictReader(open(report / "summary.csv")))
    assert rows[0]["train_val_gap"] == "-0.05"  # TRAIN_ACC[-1] − FINAL[2][0] = -0.04999999999999999, 6 digits
    assert rows[1]["train_val_gap"] == ""  # no curve, no gap
    md = {r["setting"]: r for r in table((report / "summary.md").read_text())}
    assert md["model.depth=2"]["train_val_gap"] == "-5.00"  # one job with a curve: no ± part


def test_summary_md_says_what_was_swept_how_to_read_it_lists_failures_and_links_the_plots(report):
    lines = (report / "summary.md").read_text().split("\n")
    assert lines[:6] == [
        "# Sweep summary (12 jobs)",
        "",
        "Swept: model.depth. Accuracies in %, mean ± std over seeds; train_val_gap = final train acc − final val acc "
        "(the overfitting symptom); wall_s is summed over seeds. Sorted by final val acc.",
        "",
        "| setting | jobs | params | macs | receptive_field | val_acc_final | val_acc_best | test_acc | "
        "test_consistency | train_val_gap | epochs | wall_s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # depth 5: no job finished, so no numbers (empty cells, '–' for the accuracies), and no wall time to sum
    assert lines[9] == "| model.depth=5 | 0/3 |  |  |  | – | – | – | – | – |  | 0 |"
    assert lines[10:] == [
        "",
        "## Jobs that did not complete (4)",
        "",
        "- `8` (model.depth=4, seed 2): failed: depth 4 does not fit",
        "- `9` (model.depth=5, seed 0): failed: depth 5 does not fit",
        "- `10` (model.depth=5, seed 1): failed: depth 5 does not fit",
        "- `11` (model.depth=5, seed 2): failed: depth 5 does not fit",
        "",
        "## Plots",
        "",
        "![acc_by_axis.png](acc_by_axis.png)",  # no job has val or loss curves: only the per-axis plot
        "",  # the file ends with one newline
    ]


def write_job(job: Path, overrides: list[str], record: dict | None) -> Path:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if record is not None:
        (job / "metrics.json").write_text(json.dumps(record))
    return job


def test_jobs_that_lack_an_axis_a_seed_or_a_record_still_get_their_row(tmp_path, caplog):
    sweep = tmp_path / "sweep"
    done = {"status": "completed", "val_acc_final": 0.123456789, "seed": 7, "wall_s": 1.0}  # seed only in the record
    write_job(sweep / "0", ["model.depth=2", "optim.lr=0.1"], done)
    write_job(sweep / "1", ["model.depth=3"], {**done, "seed": 8})  # no optim.lr: '-' in the label, '' in the CSV
    write_job(sweep / "2", ["model.depth=4", "seed=5"], None)  # never wrote metrics.json
    write_job(sweep / "3", ["model.depth=5"], None).joinpath("metrics.json").write_text("{cut")
    compare([sweep], tmp_path / "out")

    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert [(r["model.depth"], r["optim.lr"], r["seed"], r["status"]) for r in rows] == [
        ("2", "0.1", "7", "completed"),
        ("3", "", "8", "completed"),
        ("4", "", "5", "missing"),
        ("5", "", "", "unreadable"),  # its overrides.yaml is whole: the row says which setting it was
    ]
    assert rows[0]["val_acc_final"] == "0.123457"  # floats to 6 significant digits
    damaged = sweep / "3" / "metrics.json"
    assert rows[3]["error"].startswith(f"{damaged} could not be read")
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [rows[3]["error"]]

    lines = (tmp_path / "out" / "summary.md").read_text().splitlines()
    assert lines[2].startswith("Swept: model.depth, optim.lr. ")
    # equal mean final val acc (0.1235 each): ties go by setting; jobs without a finished run last
    assert [r["setting"] for r in table("\n".join(lines))] == [
        "model.depth=2 optim.lr=0.1",
        "model.depth=3 optim.lr=-",
        "model.depth=4 optim.lr=-",
        "model.depth=5 optim.lr=-",
    ]
    assert "- `2` (model.depth=4 optim.lr=-, seed 5): missing" in lines  # no record, so no error to show
    assert f"- `3` (model.depth=5 optim.lr=-, seed -): unreadable: {rows[3]['error']}" in lines


def test_a_single_run_is_the_setting_all_with_nothing_swept_and_no_plots(tmp_path):
    run = write_job(tmp_path / "run", ["seed=3"], {"status": "completed", "val_acc_final": 0.5, "wall_s": 2.0})
    written = compare([run], tmp_path / "out")
    assert [p.name for p in written] == ["summary.csv", "summary.md"]
    md = (tmp_path / "out" / "summary.md").read_text()
    assert md.splitlines()[2].startswith("Swept: nothing. ")
    assert [(r["setting"], r["val_acc_final"]) for r in table(md)] == [("all", "50.00")]
    assert "## Plots" not in md


def test_overrides_are_read_as_the_command_line_wrote_them_without_hydras_own(tmp_path):
    overrides = ["model.depth=3", "+extra.note=a=b", "~trainer.gradient_clip_val", "hydra.job.chdir=true"]
    job = write_job(tmp_path / "job", [*overrides, "data.flag=False", "optim.lr=0.10", "++X.scale=2"], None)
    # '+'/'++' (add) and '~' (delete) are not part of the key; Hydra's multirun writes False for the typed false,
    # and that is the only value respelled (0.10 stays as typed)
    assert read_overrides(job) == {
        "model.depth": "3",
        "extra.note": "a=b",
        "data.flag": "false",
        "optim.lr": "0.10",
        "X.scale": "2",
    }


def test_an_overrides_file_that_is_not_a_list_makes_the_job_unreadable_naming_the_file(tmp_path):
    job = write_job(tmp_path / "job", [], {"status": "completed"})
    (job / ".hydra" / "overrides.yaml").write_text("model.depth: 3\n")
    (row,) = collect_jobs([job])
    path = job / ".hydra" / "overrides.yaml"
    assert (row.status, row.metrics["error"]) == (
        "unreadable",
        f"{path} could not be read (ValueError: not a list of overrides (key=value texts))",
    )


@pytest.mark.parametrize(
    "edit, named",
    [
        ({"test_acc": "0.9"}, "test_acc='0.9'"),
        ({"val_acc_final": True}, "val_acc_final=True"),
        ({"curves": {"val/acc": [0.5, "x"]}}, "curves.val/acc=[0.5, 'x']"),
        ({"curves": "none"}, "curves='none'"),
    ],
)
def test_a_hand_edited_record_makes_its_job_unreadable_and_the_rest_are_reported(tmp_path, edit, named):
    # a string where a number belongs ended the report in a traceback (100 * '0.9' is text; format code 'f' fails)
    done = {"status": "completed", "val_acc_final": 0.5, "test_acc": 0.5, "wall_s": 1.0}
    write_job(tmp_path / "sweep" / "0", ["seed=0"], done)
    write_job(tmp_path / "sweep" / "1", ["seed=1"], {**done, **edit})
    compare([tmp_path / "sweep"], tmp_path / "out")
    rows = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert [r["status"] for r in rows] == ["completed", "unreadable"]
    assert rows[1]["error"].startswith(f"{tmp_path / 'sweep' / '1' / 'metrics.json'} holds {named}, which is not")
    assert [(r["setting"], r["jobs"], r["test_acc"]) for r in table((tmp_path / "out" / "summary.md").read_text())] == [
        ("all", "1/2", "50.00")
    ]


def test_compare_prints_the_summary_then_the_files_it_wrote(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(sweep), "--out", str(tmp_path)])
    cnnlab_compare()
    written = [tmp_path / name for name in ("summary.csv", "summary.md", "acc_by_axis.png")]
    wrote = "wrote\n" + "".join(f"  {path}\n" for path in written)
    assert capsys.readouterr().out == (tmp_path / "summary.md").read_text() + "\n" + wrote


def test_compare_writes_into_the_first_directory_when_no_out_is_given(sweep, tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(sweep, first)
    shutil.copytree(sweep / "0", second / "0")
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(first), str(second)])
    cnnlab_compare()
    assert (first / "summary.md").read_text().startswith("# Sweep summary (13 jobs)")  # both directories' jobs
    assert not (second / "summary.md").exists()


def test_compare_refuses_directories_that_do_not_exist_naming_each(sweep, tmp_path, monkeypatch, capsys):
    missing = [tmp_path / "no-such-sweep", tmp_path / "typo"]
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(missing[0]), str(sweep), str(missing[1])])
    with pytest.raises(SystemExit) as exit_info:
        cnnlab_compare()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: not a directory: {missing[0]}, {missing[1]}. Fix: pass a sweep directory, "
        "e.g. outputs/multirun/<date>/<time>.\n"
    )


def test_compare_help_names_the_command_and_says_what_each_argument_is(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        cnnlab_compare()
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines to the terminal's width
    assert exit_info.value.code == 0 and out.startswith("usage: cnnlab-compare [-h] [--out OUT] dirs [dirs ...]")
    assert "cnnlab-compare SWEEP_DIR [MORE_DIRS...]`: summary.csv, summary.md and plots for a sweep." in out
    assert "dirs sweep (or run) directories" in out
    assert "--out OUT where to write the report (default: the first directory)" in out


def test_compare_refuses_an_out_that_is_a_file_and_leaves_it_as_it_was(sweep, tmp_path, monkeypatch, capsys):
    """The same line as test_sweep's (which needs a training), on the hand-made sweep, so mutation testing runs it."""
    in_the_way = tmp_path / "report"
    in_the_way.write_text("a file, not a folder")
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(sweep), "--out", str(in_the_way)])
    with pytest.raises(SystemExit) as exit_info:
        cnnlab_compare()
    assert exit_info.value.code == 2
    fix = "Fix: pass --out <a writable folder that is not a run directory>."
    assert capsys.readouterr().err == f"error: --out {in_the_way} is a file, not a directory. {fix}\n"
    assert in_the_way.read_text() == "a file, not a folder"


def test_compare_refuses_folders_without_jobs_and_makes_a_nested_out(sweep, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CnnlabError) as error:
        compare([empty, tmp_path], tmp_path / "out")
    assert str(error.value) == f"no run directories (with .hydra/overrides.yaml) under {empty}, {tmp_path}"
    assert compare([sweep], tmp_path / "a" / "b")[0] == tmp_path / "a" / "b" / "summary.csv"


def small_sweep(sweep: Path) -> Path:
    """Two finished jobs sweeping augment (flip vs none) with full records and curves."""
    for i, (aug, acc) in enumerate([("flip", 0.6), ("none", 0.5)]):
        record = {
            "status": "completed",
            "val_acc_final": acc,
            "val_acc_best": acc,
            "test_acc": acc,
            "wall_s": 1.0,
            "params": 100,
            "curves": {"val/acc": [acc / 2, acc], "train/loss": [2.0, 1.0], "val/loss": [2.1, 1.2]},
        }
        write_job(sweep / str(i), [f"augment={aug}", "seed=0"], record)
    return sweep


def rows_of(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "summary.csv")))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_record_with_a_non_finite_number_is_an_unreadable_row_and_the_report_is_written(tmp_path, value):
    sweep = small_sweep(tmp_path / "sweep")
    record = json.loads((sweep / "0/metrics.json").read_text())
    (sweep / "0/metrics.json").write_text(json.dumps({**record, "test_acc": value}))  # json writes NaN / Infinity
    compare([sweep], tmp_path / "out")
    rows = rows_of(tmp_path / "out")
    assert [(r["augment"], r["status"]) for r in rows] == [("flip", "unreadable"), ("none", "completed")]
    assert f"holds test_acc={value}" in rows[0]["error"]


def test_a_completed_record_without_validation_numbers_gets_its_row_and_plots(tmp_path):
    # an eval's record, or a run without validation: no val_acc_final (the by-axis plot indexed it: KeyError)
    sweep = small_sweep(tmp_path / "sweep")
    write_job(sweep / "2", ["augment=crop", "seed=0"], {"status": "completed", "test_acc": 0.55, "wall_s": 1.0})
    written = compare([sweep], tmp_path / "out")
    assert "acc_by_axis.png" in [p.name for p in written]
    assert [(r["augment"], r["val_acc_final"], r["test_acc"]) for r in rows_of(tmp_path / "out")] == [
        ("flip", "0.6", "0.6"),
        ("none", "0.5", "0.5"),
        ("crop", "", "0.55"),
    ]


def test_a_job_given_twice_counts_once_and_a_linked_job_folder_counts(tmp_path):
    sweep = small_sweep(tmp_path / "sweep")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "0").symlink_to(sweep / "0")  # a job copied into another sweep as a link
    (linked / "loop").symlink_to(linked)  # a link back up the tree is followed once
    assert [j.path.name for j in collect_jobs([linked])] == ["0"]
    jobs = collect_jobs([sweep, sweep, sweep / "0", linked])
    assert [str(j.path.relative_to(tmp_path)) for j in jobs] == ["sweep/0", "sweep/1"]


def test_a_job_whose_overrides_cannot_be_read_does_not_make_every_key_swept(tmp_path):
    sweep = small_sweep(tmp_path / "sweep")
    write_job(sweep / "2", [], None)
    (sweep / "2/.hydra/overrides.yaml").write_text(yaml.safe_dump([1, 2, {"a": 3}]))
    compare([sweep], tmp_path / "out")
    assert (tmp_path / "out/summary.md").read_text().splitlines()[2].startswith("Swept: augment. ")
    assert [r["status"] for r in rows_of(tmp_path / "out")][-1] == "unreadable"


def test_a_report_that_fails_leaves_the_earlier_report_whole(tmp_path, monkeypatch):
    sweep = small_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    compare([sweep], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_job(sweep / "2", ["augment=crop", "seed=0"], {"status": "completed", "test_acc": 0.55, "wall_s": 1.0})

    def broken(*args, **kwargs):
        raise RuntimeError("the markdown writer broke")

    monkeypatch.setattr("cnnlab.report.compare.write_markdown", broken)
    with pytest.raises(RuntimeError):
        compare([sweep], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # plots were overwritten before the crash


def test_a_folder_where_the_report_writes_a_file_is_refused_before_anything_is_written(tmp_path):
    sweep = small_sweep(tmp_path / "sweep")
    (tmp_path / "out/loss_curves.png").mkdir(parents=True)
    with pytest.raises(CnnlabError, match="holds a folder named loss_curves.png, where the report writes a file"):
        compare([sweep], tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["loss_curves.png"]
