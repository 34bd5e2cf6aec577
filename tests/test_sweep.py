"""Sweeps: a real multirun on tiny data, failures recorded without stopping the others, the comparison report."""

import contextlib
import csv
import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from cnnlab.config import config_dir
from cnnlab.errors import ConfigError
from cnnlab.report.compare import compare
from cnnlab.runs import write_metrics
from cnnlab.sweep import check_search_space, study_from_jobs, summarise_study
from conftest import compose_config, restored_process_state, run_script

FAST = [
    "data=tiny",
    "trainer.max_epochs=1",
    "model.width=8",
    "progress_bar=false",
    "data.train_count=600",
    "data.val_size=100",
]


def multirun(sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("cnnlab-train")
    return subprocess.run(
        [str(exe), "-m", *args, *FAST, f"hydra.sweep.dir={sweep_dir}"],
        cwd=sweep_dir.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """depth_pool_aug narrowed to 6 jobs over two seeds; the two with depth 7 cannot work. Without TensorBoard's
    lab images and with 100 test images: what the tests read is the records, the curves and the events files."""
    sweep_dir = tmp_path_factory.mktemp("sweeps") / "depth_pool"
    axes = ["experiment=depth_pool_aug", "model.depth=2,3,7", "model.pool=max", "augment=none", "seed=0,1"]
    argv = [
        "cnnlab-train",
        "-m",
        *axes,
        "lab_images=false",
        "data.test_count=100",
        *FAST,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    with restored_process_state(), contextlib.chdir(sweep_dir.parent):  # in this process: 6 s less than its own
        code, printed = run_script(argv)
    return sweep_dir, code, printed


def test_every_job_gets_its_own_directory_and_metrics(sweep):
    sweep_dir, *_ = sweep
    statuses = {
        d.name: json.loads((d / "metrics.json").read_text())["status"]
        for d in sweep_dir.iterdir()
        if d.is_dir() and d.name != "tb"
    }
    assert sorted(statuses) == [str(i) for i in range(6)]
    assert sorted(statuses.values()) == ["completed"] * 4 + ["failed"] * 2
    # every job logs to train.log as cnnlab-train's job (jobs after the first wrote app.log, job.name "app")
    assert all((sweep_dir / job / "train.log").is_file() for job in statuses)
    assert {
        yaml.safe_load((sweep_dir / j / ".hydra/hydra.yaml").read_text())["hydra"]["job"]["name"] for j in statuses
    } == {"train"}


def test_a_failing_job_is_reported_and_the_sweep_exits_non_zero(sweep):
    sweep_dir, code, printed = sweep
    assert code == 1
    assert "2 of 6 jobs did not complete" in printed
    failed = [json.loads(p.read_text()) for p in sweep_dir.glob("*/metrics.json")]
    assert all("largest valid depth is 5" in m["error"] for m in failed if m["status"] == "failed")


def test_compare_writes_one_row_per_job_and_non_empty_plots(sweep, tmp_path):
    sweep_dir, *_ = sweep
    written = compare([sweep_dir], tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert len(rows) == 6
    assert {r["model.depth"] for r in rows} == {"2", "3", "7"} and {r["seed"] for r in rows} == {"0", "1"}
    done = [r for r in rows if r["status"] == "completed"]
    assert all(float(r["val_acc_final"]) > 0.1 and int(r["params"]) > 0 and r["receptive_field"] for r in done)
    assert {int(r["receptive_field"]) for r in done} == {10, 22}  # depth 2 and 3 with 2×2 pooling
    assert sum(r["status"] == "failed" for r in rows) == 2
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pngs} == {"val_acc_vs_epoch.png", "loss_curves.png", "acc_by_axis.png"}
    assert all(p.stat().st_size > 5000 for p in pngs)
    summary = (tmp_path / "summary.md").read_text()
    assert "Jobs that did not complete (2)" in summary and "model.depth=7" in summary


def test_compare_is_repeatable_and_handles_half_finished_sweeps(sweep, tmp_path):
    sweep_dir, *_ = sweep
    first, second = tmp_path / "first", tmp_path / "second"
    compare([sweep_dir], first)
    compare([sweep_dir], second)
    names = ["summary.csv", "summary.md", "val_acc_vs_epoch.png", "loss_curves.png", "acc_by_axis.png"]
    assert filecmp.cmpfiles(first, second, names, shallow=False)[0] == names
    partial = tmp_path / "partial"
    shutil.copytree(sweep_dir, partial)
    (partial / "0" / "metrics.json").unlink()  # a job still running
    compare([partial], partial)
    rows = list(csv.DictReader(open(partial / "summary.csv")))
    assert len(rows) == 6 and rows[0]["status"] == "missing"


def test_seeds_of_one_setting_are_grouped_with_mean_and_std(sweep, tmp_path):
    sweep_dir, *_ = sweep
    compare([sweep_dir], tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "Swept: model.depth." in summary
    lines = [line for line in summary.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    # expected from each job's own metrics.json, grouped by depth and averaged here
    final: dict[str, list[float]] = {}
    for path in sweep_dir.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        overrides = (path.parent / ".hydra" / "overrides.yaml").read_text()
        depth = next(d for d in ("2", "3", "7") if f"model.depth={d}" in overrides)
        if metrics["status"] == "completed":
            final.setdefault(depth, []).append(metrics["val_acc_final"])
    means = {d: sum(v) / len(v) for d, v in final.items()}
    best_first = sorted(means, key=lambda d: -means[d])
    assert [r["setting"] for r in table] == [f"model.depth={d}" for d in best_first] + ["model.depth=7"]
    for row in table[:2]:
        values = final[row["setting"][-1]]
        m = sum(values) / 2
        sd = (sum((v - m) ** 2 for v in values)) ** 0.5  # sample std of two values: √(Σ(v − m)² / 1)
        assert row["jobs"] == "2/2" and row["val_acc_final"] == f"{100 * m:.2f} ± {100 * sd:.2f}"
    assert table[2]["jobs"] == "0/2"


# make test keeps the sweep fixture's real multirun (test_every_job_gets_its_own_directory_and_metrics), every
# experiment config composed (test_configs), and compare's report of a swept augment (test_aug_gain)
@pytest.mark.slow
def test_aug_vs_noaug_runs_on_tiny_data(tmp_path):
    sweep_dir = tmp_path / "aug"
    proc = multirun(sweep_dir, "experiment=aug_vs_noaug", "seed=0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json")) == ["0", "1"]
    compare([sweep_dir], sweep_dir)
    assert "Swept: augment." in (sweep_dir / "summary.md").read_text()


@pytest.mark.slow
def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    sweep_dir = tmp_path / "optuna"
    proc = multirun(sweep_dir, "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(sweep_dir.glob("*/metrics.json"))) == 2
    assert "best_value" in (sweep_dir / "optimization_results.yaml").read_text()
    # Without storage the summary is rebuilt from the jobs; its best is the best job's val_acc_best.
    summary = json.loads((sweep_dir / "optuna_summary.json").read_text())
    best = max(json.loads(p.read_text())["val_acc_best"] for p in sweep_dir.glob("*/metrics.json"))
    assert summary["n_trials"] == 2 and summary["trials_by_state"] == {"COMPLETE": 2}
    assert summary["best"]["value"] == pytest.approx(best) and summary["storage"] is None
    assert set(summary["best"]["params"]) == {"optim.lr", "optim.weight_decay", "model.depth"}  # width is fixed


@pytest.mark.slow
def test_optuna_study_in_sqlite_survives_and_continues(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies' / 'cnnlab.db'}"  # the folder does not exist yet
    study_args = ["hparams_search=optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=lr_width"]
    first = multirun(tmp_path / "first", *study_args, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-2000:]
    second = multirun(tmp_path / "second", *study_args, "hydra.sweeper.n_trials=1", "hydra.sweeper.sampler.seed=1")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Using an existing study with name 'lr_width'" in second.stdout + second.stderr

    study = optuna.load_study(study_name="lr_width", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    values = [json.loads(p.read_text())["val_acc_best"] for p in sorted(tmp_path.glob("*/[0-9]/metrics.json"))]
    assert sorted(t.value for t in study.trials) == pytest.approx(sorted(values))

    first_summary = json.loads((tmp_path / "first" / "optuna_summary.json").read_text())
    summary = json.loads((tmp_path / "second" / "optuna_summary.json").read_text())
    assert first_summary["n_trials"] == 2 and summary["n_trials"] == 3
    assert summary["trials_by_state"] == {"COMPLETE": 3} and summary["study_name"] == "lr_width"
    assert summary["best"]["value"] == pytest.approx(max(values))
    assert set(summary["best"]["params"]) == {"optim.lr", "optim.weight_decay", "model.depth"}  # width is fixed
    # importances, or why Optuna could not compute them (no scikit-learn; optuna 2.10's fANOVA with numpy 2)
    assert summary["param_importances"] or summary["param_importances_unavailable"]

    again = multirun(tmp_path / "second", *study_args, "hydra.sweeper.n_trials=1")
    assert again.returncode == 2 and "needs a fresh sweep directory" in again.stdout + again.stderr
    assert len(optuna.load_study(study_name="lr_width", storage=storage).trials) == 3


def test_optuna_summary_of_a_sweep_without_storage(tmp_path):
    """Jobs written as the Optuna sweeper writes them; one failed. Expected values are the jobs' own numbers."""
    jobs = [
        ("0", ["optim.lr=0.05", "optim.weight_decay=1e-05", "model.width=32"], "completed", 0.61),
        ("1", ["optim.lr=0.2", "optim.weight_decay=0.003", "model.width=16"], "completed", 0.74),
        ("2", ["optim.lr=0.4", "optim.weight_decay=0.0001", "model.width=64"], "failed", None),
    ]
    for name, overrides, status, value in jobs:
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        write_metrics(tmp_path / name, {"status": status, "val_acc_best": value})
    space = {
        "optim.lr": "tag(log, interval(0.005, 0.5))",
        "optim.weight_decay": "tag(log, interval(1e-5, 1e-2))",
        "model.width": "choice(16, 32, 64)",
    }
    summary = summarise_study(study_from_jobs(tmp_path, space, "maximize"))
    assert summary["n_trials"] == 3 and summary["trials_by_state"] == {"COMPLETE": 2, "FAIL": 1}
    assert summary["best"] == {
        "number": 1,
        "value": 0.74,
        "params": {"optim.lr": 0.2, "optim.weight_decay": 0.003, "model.width": 16},
    }


@pytest.mark.parametrize(
    "launcher, target",
    [("joblib", "JoblibLauncher"), ("submitit_slurm", "SlurmLauncher"), ("submitit_local", "LocalLauncher")],
)
def test_launcher_configs_compose(launcher, target, tmp_path):
    cfg = compose_config(["experiment=depth_pool_aug", f"hydra/launcher={launcher}"], tmp_path)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweeper.params["model.pool"] == "max,avg,stride"


COMMON_SPACE = {"optim.lr", "optim.weight_decay"}
MODEL_SPACE = {  # the built-in models' own parameters (conf/hparams_search/space/<model>.yaml)
    "cnn": {"model.width", "model.depth"},
    "resnet": {"model.width", "model.block"},
    "mlp": {"model.dropout", "model.activation"},
    "fast": {"model.bn_momentum", "model.scale"},
}
MODELS = sorted(p.stem for p in (Path(config_dir()) / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
def test_optuna_composes_with_every_model_searching_keys_it_has(model, tmp_path, caplog):
    cfg = compose_config(["hparams_search=optuna", f"model={model}"], tmp_path)
    assert cfg.hydra.sweeper.direction == "maximize"
    check_search_space(cfg)  # every searched key is a key of this config, or a ConfigError
    own = set(cfg.hydra.sweeper.params) - COMMON_SPACE
    assert COMMON_SPACE <= set(cfg.hydra.sweeper.params) and own == MODEL_SPACE.get(model, own)
    assert ("has no search space of its own" in caplog.text) == (not own)


def test_a_model_without_a_search_space_gets_the_common_one_and_a_one_line_note(tmp_path, caplog):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text((Path(config_dir()) / "model" / "cnn.yaml").read_text())
    cfg = compose_config(["hparams_search=optuna", "model=mine", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"])
    check_search_space(cfg)
    assert set(cfg.hydra.sweeper.params) == COMMON_SPACE
    notes = [r.getMessage() for r in caplog.records if "search space" in r.getMessage()]
    assert notes == [
        "model=mine has no search space of its own (conf/hparams_search/space/mine.yaml): searching optim.lr, "
        "optim.weight_decay only."
    ]


def test_a_model_whose_space_lives_in_the_users_own_config_folder_gets_no_note(tmp_path, caplog):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "space").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "mine.yaml").write_text((Path(config_dir()) / "model" / "cnn.yaml").read_text())
    (tmp_path / "conf" / "hparams_search" / "space" / "mine.yaml").write_text("model.width: choice(8, 16)\n")
    cfg = compose_config(["hparams_search=optuna", "model=mine", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"])
    check_search_space(cfg)
    assert set(cfg.hydra.sweeper.params) == COMMON_SPACE | {"model.width"}
    assert not [r for r in caplog.records if "search space" in r.getMessage()]


def test_a_searched_key_the_model_lacks_is_refused_in_one_line(tmp_path):
    cfg = compose_config(["hparams_search=optuna", "model=resnet", '+hydra.sweeper.params={model.depth:"range(2, 5)"}'])
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.params searches model.depth, which is not a key of this "):
        check_search_space(cfg)


@pytest.mark.parametrize(
    "model", [pytest.param(m, marks=pytest.mark.slow) for m in MODEL_SPACE]
)  # make test keeps test_optuna_search_runs_trials_and_reports_the_best (a real search) and
# test_optuna_composes_with_every_model_searching_keys_it_has (every model's space, in process)
def test_optuna_runs_a_trial_of_every_built_in_model(model, tmp_path):
    sweep_dir = tmp_path / "optuna"
    exe = Path(sys.executable).with_name("cnnlab-train")
    args = ["hparams_search=optuna", f"model={model}", "hydra.sweeper.n_trials=1", "data=tiny", "trainer.max_epochs=1"]
    args += ["progress_bar=false", "lab_images=false", "data.train_count=300", "data.val_size=100"]
    proc = subprocess.run(
        [str(exe), "-m", *args, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((sweep_dir / "optuna_summary.json").read_text())
    assert summary["trials_by_state"] == {"COMPLETE": 1}
    assert set(summary["best"]["params"]) == COMMON_SPACE | MODEL_SPACE[model]
    (tb_name,) = [p.name for p in (sweep_dir / "tb").iterdir()]  # TensorBoard names the run by the searched values
    assert {o.split("=")[0] for o in tb_name.split(",")} == COMMON_SPACE | MODEL_SPACE[model]


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel(tmp_path):
    sweep_dir = tmp_path / "joblib"
    proc = multirun(sweep_dir, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "threads=1", "augment=none,flip")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(sweep_dir.glob("*/metrics.json"))) == 2


def test_compare_reports_a_partly_corrupt_sweep_naming_the_damaged_files(sweep, tmp_path):
    sweep_dir, *_ = sweep
    damaged = tmp_path / "damaged"
    shutil.copytree(sweep_dir, damaged)
    cut = damaged / "0" / "metrics.json"
    cut.write_text(cut.read_text()[:40])
    (damaged / "1" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    compare([damaged], damaged)
    rows = list(csv.DictReader((damaged / "summary.csv").open()))
    assert len(rows) == 6
    unreadable = {Path(r["job"]).name: r["error"] for r in rows if r["status"] == "unreadable"}
    assert set(unreadable) == {"0", "1"}
    assert str(cut) in unreadable["0"] and "overrides.yaml" in unreadable["1"]
    assert sum(r["status"] == "completed" for r in rows) == 2  # jobs 2 and 3 (4 and 5 ask for depth 7)


def test_compare_refuses_an_out_that_cannot_be_written_with_one_line(sweep, tmp_path, monkeypatch, capsys):
    from cnnlab.report.compare import main

    sweep_dir, *_ = sweep
    in_the_way = tmp_path / "report"
    in_the_way.write_text("a file, not a folder")  # works as root too, where permission bits do not stop writes
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(sweep_dir), "--out", str(in_the_way)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    fix = "Fix: pass --out <a writable folder that is not a run directory>."
    assert err == f"error: --out {in_the_way} is a file, not a directory. {fix}\n"


def test_tensorboard_names_each_sweep_job_by_what_it_changed(sweep):
    sweep_dir, *_ = sweep
    # model.pool=max and augment=none are the same for every job; depth 7 was refused before it logged
    assert sorted(p.name for p in (sweep_dir / "tb").iterdir()) == [
        "model.depth=2,seed=0",
        "model.depth=2,seed=1",
        "model.depth=3,seed=0",
        "model.depth=3,seed=1",
    ]
    assert all(any(p.glob("events.out.tfevents.*")) for p in (sweep_dir / "tb").iterdir())


def test_compare_never_writes_into_a_finished_run(sweep, monkeypatch, capsys):
    from cnnlab.report.compare import main

    sweep_dir, *_ = sweep
    run_dir = sweep_dir / "2"  # a completed job: compare given the run itself would default --out to it
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    monkeypatch.setattr("sys.argv", ["cnnlab-compare", str(run_dir)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and "is a run directory" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
