"""Every config value is checked before any work starts: a generated wrong-typed value for every leaf key
of the composed configs is refused with one message that names the key."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from cnnlab.config import UNION, _leaves, compose_config, validate
from cnnlab.errors import ConfigError
from conftest import run_script

COMPOSITIONS = [[], ["model=mlp"], ["experiment=fast94"], ["optim=adamw", "schedule=triangle", "data=tiny"]]


def wrong_value(key, value):
    """A value of another type than `value`: a mapping where several types are valid, a list where a string
    or null is expected, else a string."""
    if key in UNION:
        return {"x": 1}
    if isinstance(value, str) or value is None:
        return [1, 2]
    return "abc"


COMPOSED = {tuple(o): compose_config(o) for o in COMPOSITIONS}  # composing costs ~0.1 s: once per list


def composed(overrides):
    return copy.deepcopy(COMPOSED[tuple(overrides)])


def leaf_cases():
    for overrides in COMPOSITIONS:
        for key, value in _leaves(composed(overrides)).items():
            if key.startswith(("callbacks.", "logger.", "data.label_unsafe.")):
                continue  # free-form mappings: their entries are the user's own
            yield pytest.param(overrides, key, value, id=f"{'+'.join(overrides) or 'default'}:{key}")


@pytest.mark.parametrize("overrides, key, value", list(leaf_cases()))
def test_a_wrong_typed_value_for_any_key_is_refused_naming_the_key(overrides, key, value):
    defaults, cfg = composed(overrides), composed(overrides)
    bad = wrong_value(key, value)
    OmegaConf.update(cfg, key, bad, merge=False)
    with pytest.raises(ConfigError) as error:
        validate(cfg, defaults)
    message = str(error.value)
    assert message.startswith(key) and "Fix:" in message and "\n" not in message


def test_the_defaults_pass():
    for overrides in COMPOSITIONS:
        validate(compose_config(overrides), compose_config(overrides))


def test_values_of_an_accepted_other_type_pass():
    defaults = compose_config([])
    for key, value in [
        ("data.val_size", 0.1),
        ("channels_last", True),
        ("trainer.precision", 32),
        ("trainer.devices", "auto"),
        ("data.train_subset", 500),
        ("optim.lr", 1),
    ]:
        cfg = compose_config([])
        OmegaConf.update(cfg, key, value, merge=False)
        validate(cfg, defaults)


def test_the_leaves_cover_nested_groups():
    keys = _leaves(compose_config([]))
    assert {
        "model.depth",
        "optim.lr",
        "schedule.pct_start",
        "trainer.max_epochs",
        "data.batch_size",
        "augment.ops",
        "seed",
    } <= set(keys)
    assert isinstance(keys["augment.ops"], ListConfig) and not isinstance(keys["model.depth"], DictConfig)


# ~5-10 s each, so make test-slow: the same refusals are pinned in process (test_lab's model=no_such_model_xyz,
# model._target_ below), and make test keeps test_train's test_cli_bad_value_is_one_clear_error_without_traceback,
# a refusal by cnnlab-train that takes this path (exit 2, one message, no traceback, nothing written)
CLI_CASES = [  # a name no config will plausibly take: the list of valid ones grows as configs are added
    pytest.param(
        ["model=no_such_model_xyz"],
        "model=no_such_model_xyz is not a config in conf/model/. Valid: cnn, fast, mlp",
        marks=pytest.mark.slow,
    ),
    pytest.param(["model.dpth=3"], "model.dpth is not a key of the config", marks=pytest.mark.slow),
    pytest.param(["threads=-1"], "threads=-1 is out of range", marks=pytest.mark.slow),  # before torch's threads
    pytest.param(
        ["model._target_=nonexistent.Module"],
        "model._target_=nonexistent.Module cannot be imported",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("args, message", CLI_CASES)
def test_the_command_line_refuses_bad_input_with_one_line_and_exit_2(tmp_path, args, message):
    exe = Path(sys.executable).with_name("cnnlab-train")
    proc = subprocess.run(  # the run directory's parent does not exist yet: it is not left behind either
        [str(exe), "data=tiny", *args, f"hydra.run.dir={tmp_path}/outputs/run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-2000:]
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "outputs").exists()


def test_ctrl_c_while_the_command_starts_up_ends_with_one_line_and_exit_130(tmp_path):
    import signal
    import time

    exe = Path(sys.executable).with_name("cnnlab-train")
    proc = subprocess.Popen(
        [str(exe), "data=tiny", f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a shell starts background jobs with SIGINT ignored, and a child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(0.7)  # importing torch and Lightning takes seconds: the signal lands in an import
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().endswith("stopped by Ctrl+C.") and "Traceback" not in out + err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "key, value, accepted",
    [
        ("trainer.gradient_clip_val", 1.0, True),  # a Lightning Trainer argument the config does not list
        ("optim.dampening", 0.1, True),  # torch.optim.SGD's
        ("data.on_device", True, True),
        ("trainer.gradient_clip", 1.0, False),  # misspelt: no such Trainer argument
        ("model.foo", 1, False),
    ],
)
def test_a_new_key_passes_only_when_what_the_group_builds_takes_it(key, value, accepted):
    defaults, cfg = composed([]), composed([])
    OmegaConf.set_struct(cfg, False)
    OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    if accepted:
        validate(cfg, defaults)
    else:
        with pytest.raises(ConfigError, match=f"^{key} is not a key of this config, nor an argument"):
            validate(cfg, defaults)


# The run policy on configs the user wrote: each fault gets one line naming the key, what is wrong and the fix,
# exit 2, and no folder left behind. Hydra's instantiate wraps a constructor's errors: a `_target_` that does not
# import and arguments that do not bind to its signature are the config's; an error inside its code is a bug.
USER_CONFIGS = {  # conf/model/<name>.yaml in a folder of the user's own (hydra.searchpath)
    "mandatory": "_target_: cnnlab.models.cnn.ConvNet\ndepth: ???\nwidth: 8\n",
    "needs_arg": "_target_: torch.nn.Linear\nin_features: 3\n",  # out_features is required
    "extra_key": "_target_: cnnlab.models.cnn.ConvNet\ndepth: 2\nbogus: 1\n",
    "ctor_bug": "_target_: torch.nn.Linear\nin_features: 3\nout_features: abc\n",  # a TypeError inside Linear
}
POLICY_CASES = [
    (
        ["model._target_=nonexistent.Module"],
        "model._target_=nonexistent.Module cannot be imported (ModuleNotFoundError",
    ),
    (["model._target_=cnnlab.models.mlp.Nope"], "model._target_=cnnlab.models.mlp.Nope cannot be imported"),
    (["model._target_=cnnlab.models.mlp.MLP"], "model.depth is not an argument of cnnlab.models.mlp.MLP (it takes: "),
    (
        ["model.depth=???"],
        "model.depth has no value: its config marks it mandatory (???). Fix: give it one, e.g. model.depth=4",
    ),
    (["+model.bogus=1"], "model.bogus is not a key of this config, nor an argument of what it builds"),
    (
        ["+callbacks.stop._target_=lightning.pytorch.callbacks.EarlyStopping"],
        "callbacks.stop.monitor is required by lightning.pytorch.callbacks.EarlyStopping but not given",
    ),
    (["model=mandatory"], "model.depth has no value: its config marks it mandatory (???)"),
    (["model=needs_arg"], "model.out_features is required by torch.nn"),
    (["model=extra_key"], "model.bogus is not an argument of cnnlab.models.cnn.ConvNet"),
]


def user_conf(tmp_path):
    for name, text in USER_CONFIGS.items():
        (tmp_path / "conf" / "model").mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / "model" / f"{name}.yaml").write_text(text)
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def run_checked(overrides, run_dir):
    """cnnlab-train's run_job with its own checks, in process, on the composed config; the job must not start."""
    from cnnlab.cli.train import check
    from cnnlab.runs import run_job
    from conftest import compose_config as compose_job

    cfg = compose_job(["data=tiny", *overrides], run_dir)  # makes run_dir, as Hydra does before the job
    return run_job(cfg, check, lambda *args: pytest.fail("the job started"))


@pytest.mark.parametrize("overrides, message", POLICY_CASES)
def test_a_users_config_fault_ends_in_one_line_exit_2_and_no_run_dir(overrides, message, tmp_path):
    from cnnlab.runs import RunEnded

    with pytest.raises(RunEnded) as ended:
        run_checked([*overrides, user_conf(tmp_path)], tmp_path / "run")
    assert ended.value.code == 2 and ended.value.reason.startswith(message), ended.value.reason
    assert "\n" not in ended.value.reason and "Fix:" in ended.value.reason
    assert not (tmp_path / "run").exists()


def test_a_bug_inside_a_constructor_keeps_its_traceback_and_leaves_no_run_dir(tmp_path):
    from hydra.errors import InstantiationException

    with pytest.raises(InstantiationException) as raised:
        run_checked(["model=ctor_bug", user_conf(tmp_path)], tmp_path / "run")
    assert isinstance(raised.value.__cause__, TypeError) and raised.value.__cause__.__traceback__.tb_next is not None
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a subprocess (~5 s idle); the in-process test above pins the same decision
def test_the_command_line_keeps_the_traceback_of_a_bug_inside_a_constructor_exit_1(tmp_path):
    exe = Path(sys.executable).with_name("cnnlab-train")
    args = ["data=tiny", "model=ctor_bug", user_conf(tmp_path), f"hydra.run.dir={tmp_path}/outputs/run"]
    proc = subprocess.run([str(exe), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "TypeError" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()


SWEEP_CASES = [
    (  # a search-space key holding dots, set key by key: refused while Hydra composes the command line
        ["hparams_search=optuna", "hydra.sweeper.params.model.nonsense=choice(1,2)"],
        "hydra.sweeper.params.model.nonsense: the search space's keys hold dots",
    ),
    (["model.dpth=3,4"], "model.dpth is not a key of the config"),  # after Hydra made the sweep dir
    (  # Optuna's sweeper asks a study that ran no trial for its best one
        ["hparams_search=optuna", "hydra.sweeper.n_trials=0"],
        "the study ran no trial, so it has no best value: hydra.sweeper.n_trials must be 1 or more",
    ),
    (  # sqlalchemy cannot load the URL's dialect
        ["hparams_search=optuna", "hydra.sweeper.storage=nosuchdb://x"],
        "hydra.sweeper.storage cannot be opened as Optuna's study database (NoSuchModuleError",
    ),
]


@pytest.mark.parametrize("args, message", SWEEP_CASES)
def test_a_sweep_that_cannot_start_ends_in_one_line_exit_2_and_leaves_no_sweep_dir(
    tmp_path, args, message, monkeypatch, process_state_restored
):
    monkeypatch.chdir(tmp_path)
    code, output = run_script(["cnnlab-train", "-m", "data=tiny", *args, "hydra.sweep.dir=multirun/sweep"])
    assert code == 2, output[-2000:]
    assert f"error: {message}" in output and "Traceback" not in output
    assert not (tmp_path / "multirun").exists()


def test_multirun_flag_after_the_overrides_gets_the_reordered_command():
    from cnnlab.runs import _hydra_overrides

    with pytest.raises(ConfigError, match=r"^-m comes before the overrides\. Fix: \S+ -m data=tiny model.width=4,8$"):
        _hydra_overrides(["data=tiny", "-m", "model.width=4,8"])
    assert _hydra_overrides(["-m", "data=tiny"]) is None  # Hydra's own order: Hydra parses it
    assert _hydra_overrides(["data=tiny", "-m"]) is None  # argparse takes a trailing flag too


@pytest.mark.parametrize("key", ["data.data_dir", "hydra.run.dir"])
def test_a_value_the_override_grammar_needs_quoted_gets_the_quoted_form(key):
    with pytest.raises(ConfigError) as refused:
        compose_config([f"{key}=/tmp/données"], return_hydra_config=True)
    assert str(refused.value).startswith(f"{key}=/tmp/données cannot be read by Hydra's override grammar unquoted")
    assert str(refused.value).endswith(
        f"""Fix: quote the value for Hydra, inside quotes for the shell: '{key}="/tmp/données"'."""
    )
    quoted = compose_config([f'{key}="/tmp/données"'], return_hydra_config=True)  # the fix works
    assert OmegaConf.select(quoted, key) == "/tmp/données"


@pytest.mark.slow  # a subprocess (~6 s idle)
def test_a_stored_study_continued_with_another_space_ends_in_one_line_and_leaves_no_trial_running(tmp_path):
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="widths", storage=storage, direction="maximize")
    study.add_trial(  # run earlier with the CNN's space: width from 16, 32, 64
        create_trial(
            params={"model.width": 32}, distributions={"model.width": CategoricalDistribution((16, 32, 64))}, value=0.5
        )
    )
    exe = Path(sys.executable).with_name("cnnlab-train")
    args = ["-m", "hparams_search=optuna", "data=tiny", "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={storage}"]
    args += ["hydra.sweeper.study_name=widths", '+hydra.sweeper.params={model.width:"choice(4,8)"}']
    proc = subprocess.run(
        [str(exe), *args, f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"error: the study widths in {storage} was run with another search space" in proc.stderr
    states = [t.state for t in optuna.load_study(study_name="widths", storage=storage).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL] and not (tmp_path / "sweep").exists()


def finished_run(folder: Path) -> dict[str, bytes]:
    """A hand-made finished run's folder; returns its files' bytes by path."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "metrics.json").write_text('{"status": "completed", "test_acc": 0.5}')
    (folder / ".hydra/overrides.yaml").write_text("- data=tiny\n")
    (folder / "checkpoints/best.ckpt").write_bytes(b"weights")
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "argv, refusal",
    [
        (["-m", "data=tiny", "seed=0,1", "hydra.sweep.dir={run}"], "hydra.sweep.dir {run} is a run directory"),
        (
            ["-m", "data=tiny", "seed=0,1", "hydra.sweep.dir={run}/sweep"],
            "hydra.sweep.dir {run}/sweep lies inside the run directory {run}",
        ),
        (
            ["data=tiny", "hydra.run.dir={run}/checkpoints/new"],
            "output directory {run}/checkpoints/new lies inside the run directory {run}",
        ),
    ],
)
def test_an_output_dir_in_a_finished_run_is_refused_and_the_run_keeps_every_file(
    tmp_path, monkeypatch, capsys, argv, refusal
):
    from cnnlab.cli import train
    from conftest import refused_line

    run = tmp_path / "run"
    before = finished_run(run)
    monkeypatch.chdir(tmp_path)
    err = refused_line(train, [a.format(run=run) for a in argv], monkeypatch, capsys)
    assert err.startswith(f"error: {refusal.format(run=run)}: its files are that run's record and never change. Fix: ")
    assert {str(p): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in run.rglob("*") if p.is_dir()) == [".hydra", "checkpoints"]


def test_the_api_and_the_lab_tools_refuse_a_folder_inside_a_finished_run(tmp_path, monkeypatch, capsys):
    import cnnlab
    from cnnlab.errors import CnnlabError
    from cnnlab.lab import pooling
    from conftest import refused_line

    run = tmp_path / "run"
    before = finished_run(run)
    with pytest.raises(CnnlabError, match=f"^output directory {run}/x lies inside the run directory {run}: "):
        cnnlab.train(["data=tiny", f"hydra.run.dir={run}/x"])
    err = refused_line(pooling, ["--out", str(run / "figures")], monkeypatch, capsys)
    assert err.startswith(f"error: --out {run}/figures lies inside the run directory {run}: ")
    assert {str(p): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in run.rglob("*") if p.is_dir()) == [".hydra", "checkpoints"]


def test_a_used_sweep_dir_a_dangling_link_and_resume_under_multirun_are_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    from cnnlab.cli import train
    from conftest import refused_line

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)  # a sweep's first job (its multirun.yaml may be gone)
    (sweep / "0" / "metrics.json").write_text('{"status": "completed"}')
    (tmp_path / "link").symlink_to(tmp_path / "nowhere" / "run")
    cases = [
        (["-m", "data=tiny", "seed=5,6", f"hydra.sweep.dir={sweep}"], f"hydra.sweep.dir {sweep} already holds a sweep"),
        (["-m", "data=tiny", "seed=5,6", f"hydra.sweep.dir={tmp_path}/link"], f"{tmp_path}/link is a link to "),
        (["data=tiny", f"hydra.run.dir={tmp_path}/link"], f"{tmp_path}/link is a link to {tmp_path}/nowhere/run"),
        (["-m", "data=tiny", f"resume={sweep}/0", f"hydra.sweep.dir={tmp_path}/new"], "in a multirun: a resume "),
    ]
    before = sorted(tmp_path.rglob("*"))
    for argv, refusal in cases:
        assert refusal in refused_line(train, argv, monkeypatch, capsys)
    assert sorted(tmp_path.rglob("*")) == before and (sweep / "0" / "metrics.json").read_text().endswith("}")


def test_a_new_run_in_the_current_folder_or_in_a_folder_holding_runs_is_refused(tmp_path, monkeypatch, capsys):
    # hydra.run.dir=outputs trained into the folder of every run; each later run then lay 'inside a run directory'
    from cnnlab.cli import train
    from conftest import refused_line

    before = finished_run(tmp_path / "outputs" / "runs" / "2026-01-01" / "10-00-00")
    monkeypatch.chdir(tmp_path)
    err = refused_line(train, ["data=tiny", "hydra.run.dir=outputs"], monkeypatch, capsys)
    assert err.startswith(f"error: output directory {tmp_path}/outputs holds other runs (e.g. {tmp_path}/outputs/runs/")
    for run_dir in ("''", "."):
        err = refused_line(train, ["data=tiny", f"hydra.run.dir={run_dir}"], monkeypatch, capsys)
        assert err.startswith(f"error: output directory {tmp_path} is the current folder: a run needs a folder of its")
    assert {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_bad_value_in_a_sweep_is_refused_before_its_first_job_runs(tmp_path, monkeypatch, capsys):
    # seed=0,abc ran job 0, then recorded job 1 as failed (exit 1)
    from cnnlab.cli import train
    from conftest import refused_line

    monkeypatch.chdir(tmp_path)
    for swept, message in [
        ("seed=0,abc", "seed='abc' has the wrong type: it must be an integer"),
        ("optim.lr=0.1,-1", "optim.lr=-1 is out of range: it must be a number > 0"),
        ("data.batch_size=range(64,-1,-32)", "data.batch_size=0 is out of range: it must be an integer >= 1"),
    ]:
        err = refused_line(train, ["-m", "data=tiny", swept, f"hydra.sweep.dir={tmp_path}/sweep"], monkeypatch, capsys)
        assert message in err, err
    assert list(tmp_path.iterdir()) == []
