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


CLI_CASES = [
    (["model=resnet"], "model=resnet is not a config in conf/model/. Valid: cnn, fast, mlp"),
    (["model.dpth=3"], "model.dpth is not a key of the config"),
    (["threads=-1"], "threads=-1 is out of range"),  # checked before the Hydra app sets torch's threads
]


@pytest.mark.parametrize("args, message", CLI_CASES)
def test_the_command_line_refuses_bad_input_with_one_line_and_exit_2(tmp_path, args, message):
    exe = Path(sys.executable).with_name("cnnlab-train")
    proc = subprocess.run(
        [str(exe), "data=tiny", *args, f"hydra.run.dir={tmp_path}/run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-2000:]
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


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
    time.sleep(1.0)  # importing torch and Lightning takes several seconds: the signal lands during start-up
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
