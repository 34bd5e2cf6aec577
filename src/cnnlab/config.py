"""Where the Hydra configs live, how the entry points compose them, and the checks every value passes
before any work starts (types against the defaults, ranges, unknown keys)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cnnlab.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the repository's conf/ (editable install)


def config_dir() -> str:
    """conf/ at the repository root."""
    if not (CONF_DIR / "train.yaml").exists():
        raise FileNotFoundError(f"cnnlab's configs were not found at {CONF_DIR}; reinstall with `make install`.")
    return str(CONF_DIR)


def _run_dir(resume: str | None, default: str) -> str:
    """`resume=<run dir>` continues in that directory; otherwise the fresh timestamped default."""
    return str(resume) if resume else default


def _tensorboard_dir() -> str:
    """<run dir>/tb for a single run; <sweep dir>/tb/<the overrides this job changed> in a sweep, so that
    TensorBoard over the sweep names each run by what it changed (e.g. augment=none,seed=0)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return str(Path(hydra_cfg.runtime.output_dir) / "tb")
    sweep_dir = Path(hydra_cfg.sweep.dir)
    given = (
        OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task
        if (sweep_dir / "multirun.yaml").exists()
        else []
    )
    fixed = {o.split("=", 1)[0] for o in given if "=" in o and not any(c in o.split("=", 1)[1] for c in ",(")}
    changed = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0] not in fixed and not o.startswith("hydra")]
    return str(sweep_dir / "tb" / (",".join(changed).replace("/", "_") or str(hydra_cfg.job.num)))


def register_resolvers() -> None:
    """Register the resolvers used in conf/ (idempotent)."""
    for name, fn in (("cnnlab_run_dir", _run_dir), ("cnnlab_tensorboard_dir", _tensorboard_dir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def compose_config(overrides: list[str], name: str = "train", return_hydra_config: bool = False) -> DictConfig:
    """conf/<name>.yaml with Hydra overrides, as the entry points compose it; Hydra's errors become one line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        try:
            return compose(config_name=name, overrides=overrides, return_hydra_config=return_hydra_config)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(hydra_error_line(e)) from None


def hydra_error_line(exc: Exception) -> str:
    """Hydra's composition error as one line with the choices and the fix."""
    text = " ".join(str(exc).split())
    if "Could not find '" in text:  # an unknown group option, e.g. model=resnet
        missing = text.split("Could not find '")[1].split("'")[0]
        group, option = missing.rsplit("/", 1) if "/" in missing else ("", missing)
        options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")) if group else []
        return (
            f"{group}={option} is not a config in conf/{group}/. Valid: {', '.join(options)}. "
            f"Fix: e.g. {group}={options[0] if options else '...'}."
        )
    if "Could not override '" in text:  # an unknown key, e.g. model.dpth=3
        key = text.split("Could not override '")[1].split("'")[0]
        return (
            f"{key} is not a key of the config. Fix: check its spelling (cnnlab-train --cfg job lists every "
            f"key); an argument the group's _target_ takes can be added with +{key}=..."
        )
    return f"{text.split(' Config search path')[0]} Fix: check the override's spelling and value."


# Keys whose default is null or whose valid values have several types: the types they accept.
NULLABLE = {
    "data.train_subset": (int,),
    "threads": (int,),
    "resume": (str,),
    "ckpt_path": (str,),
    "trainer.max_steps": (int,),
    "debug": (str,),
}
UNION = {
    "channels_last": (bool, str),
    "data.on_device": (bool, str),
    "trainer.precision": (str, int),
    "trainer.devices": (int, str, list),
    "data.val_size": (int, float),
    "compile": (bool,),
}
FREE_FORM = ("callbacks", "logger", "data.label_unsafe")  # mappings of the user's own objects: any key


def _between(low: float, high: float, low_open: bool = False, high_open: bool = True) -> Callable[[Any], bool]:
    return lambda v: (low < v if low_open else low <= v) and (v < high if high_open else v <= high)


# key → (valid?, what valid means, an example). Models check their own arguments when they are built.
RANGES: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "seed": (lambda v: v >= 0, "an integer >= 0", "0"),
    "label_smoothing": (_between(0, 1), "in [0, 1)", "0.1"),
    "norm_lr_scale": (lambda v: v > 0, "a number > 0", "1.0"),
    "threads": (lambda v: v >= 1, "an integer >= 1 (or null: torch's default)", "2"),
    "tta": (lambda v: v in (0, 1, 2), "0 (off), 1 (mirror) or 2 (mirror + translate)", "0"),
    "trainer.max_epochs": (lambda v: v >= 1, "an integer >= 1", "10"),
    "trainer.max_steps": (lambda v: v == -1 or v >= 1, "an integer >= 1, or -1 for no limit", "-1"),
    "data.batch_size": (lambda v: v >= 1, "an integer >= 1", "128"),
    "data.eval_batch_size": (lambda v: v >= 1, "an integer >= 1", "500"),
    "data.train_subset": (lambda v: v >= 1, "an integer >= 1 (or null for all)", "5000"),
    "data.val_size": (
        lambda v: v >= 0 and (isinstance(v, int) or v < 1),
        "a count >= 0 or a fraction in [0, 1)",
        "5000",
    ),
    "data.on_device": (lambda v: v in (True, False, "auto"), "auto, true or false", "auto"),
    "optim.lr": (lambda v: v > 0, "a number > 0", "0.05"),
    "optim.momentum": (_between(0, 1), "in [0, 1)", "0.9"),
    "optim.weight_decay": (lambda v: v >= 0, "a number >= 0", "5e-4"),
    "schedule.pct_start": (_between(0, 1, low_open=True), "in (0, 1)", "0.25"),
    "schedule.div_factor": (lambda v: v > 0, "a number > 0", "10.0"),
    "schedule.final_div_factor": (lambda v: v > 0, "a number > 0", "100.0"),
    "schedule.peak": (_between(0, 1, low_open=True, high_open=False), "in (0, 1]", "0.23"),
    "schedule.start": (lambda v: v >= 0, "a number >= 0", "0.2"),
    "schedule.end": (lambda v: v >= 0, "a number >= 0", "0.07"),
    "model.dropout": (_between(0, 1), "in [0, 1)", "0.1"),
    "trainer.accelerator": (
        lambda v: v in ("auto", "cpu", "gpu", "cuda", "mps"),
        "auto, cpu, gpu, cuda or mps",
        "auto",
    ),
}


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, DictConfig):
        out: dict[str, Any] = {}
        for key in node:
            path = f"{prefix}{key}"
            if path == "hydra":
                continue
            try:
                value = node[key]
            except Exception:  # missing (???) or an interpolation that needs a running Hydra job: the raw text
                value = node._get_node(key)._value()
            if isinstance(value, DictConfig) and len(value) and path not in FREE_FORM:
                out.update(_leaves(value, path + "."))
            else:
                out[path] = value
        return out
    return {prefix.rstrip("."): node}


def _target_accepts(cfg: DictConfig, key: str) -> bool:
    """Whether `key` (group.name) names an argument of the group's `_target_` (a class, its bases, a function)."""
    import inspect

    from hydra.utils import get_object

    group, _, name = key.rpartition(".")
    target = OmegaConf.select(cfg, f"{group}._target_") if group else None
    if not isinstance(target, str):
        return False
    try:
        obj = get_object(target)
    except Exception:
        return False
    functions = [c.__init__ for c in inspect.getmro(obj) if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    for function in functions:
        try:
            if name in inspect.signature(function).parameters:
                return True
        except (TypeError, ValueError):
            continue
    return False


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    if isinstance(value, ListConfig):
        return list in types
    return isinstance(value, tuple(t for t in types if t is not bool))


def _type_names(types: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def validate(cfg: DictConfig, defaults: DictConfig) -> None:
    """Reject unknown keys, values of the wrong type (against `defaults`: the same config groups without
    value overrides) and values out of range, before any data loads. One ConfigError per bad value."""
    given, expected = _leaves(cfg), _leaves(defaults)
    for key, value in given.items():
        if key.startswith("hydra.") or key == "hydra" or any(key.startswith(f + ".") for f in FREE_FORM):
            continue
        parent = next((p for p in expected if key.startswith(p + ".")), None)
        if parent is not None:  # a mapping where a single value belongs
            raise ConfigError(
                f"{parent}={OmegaConf.to_container(OmegaConf.select(cfg, parent))} has the wrong type: "
                f"it must be {_type_names(UNION.get(parent) or (type(expected[parent]),))}. "
                f"Fix: e.g. {parent}={_example(parent, expected[parent])}."
            )
        if key not in expected and not any(key.startswith(f) for f in FREE_FORM):
            if _target_accepts(cfg, key):
                continue  # e.g. +trainer.gradient_clip_val=1.0: an argument its _target_ takes, checked there
            raise ConfigError(
                f"{key} is not a key of this config, nor an argument of what it builds. Fix: check its spelling "
                f"(cnnlab-train --cfg job lists every key), or remove +{key}."
            )
        default = expected.get(key)
        types = UNION.get(key) or NULLABLE.get(key) or (() if default is None else (type(default),))
        if isinstance(default, ListConfig):
            types = (list,)
        if value is None and (default is None or key in NULLABLE):
            continue
        if types and (value is None or not _type_ok(value, types)):
            raise ConfigError(
                f"{key}={value!r} has the wrong type: it must be {_type_names(types)}. "
                f"Fix: e.g. {key}={_example(key, default)}."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value} is not a finite number. Fix: e.g. {key}={_example(key, default)}.")
        if key in RANGES and not isinstance(value, ListConfig):
            check, meaning, example = RANGES[key]
            if not check(value):
                raise ConfigError(f"{key}={value!r} is out of range: it must be {meaning}. Fix: e.g. {key}={example}.")


def _example(key: str, default: Any) -> str:
    if key in RANGES:
        return RANGES[key][2]
    if isinstance(default, bool):
        return str(default).lower()
    return "null" if default is None else str(default)


def defaults_for(choices: dict[str, Any]) -> DictConfig:
    """The config the same group choices give without value overrides: the reference for types."""
    picked = [
        f"{k}=[{','.join(v)}]" if isinstance(v, (list, ListConfig)) else f"{k}={v}"
        for k, v in choices.items()
        if v is not None and not k.startswith("hydra")
    ]
    return compose_config(picked)  # eval.yaml adds no keys to train.yaml
