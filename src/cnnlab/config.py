"""Where the Hydra configs live, how the entry points compose them, and the checks every value passes
before any work starts (types against the defaults, ranges, unknown keys)."""

from __future__ import annotations

import inspect
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError

from cnnlab.data.folders import class_folder_count
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


def task_overrides(hydra_cfg: Any) -> list[str]:
    """The command line's overrides as typed: Hydra keeps them in a ListConfig, where reading an item resolves a
    `${...}` in its value (model.width='${nope}' raised there, outside the job's own error handling)."""
    return list(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))


def _tensorboard_dir() -> str:
    """<run dir>/tb for a single run; <sweep dir>/tb/<the overrides this job changed> in a sweep, so that
    TensorBoard over the sweep names each run by what it changed (e.g. augment=none,seed=0)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return str(Path(hydra_cfg.runtime.output_dir) / "tb")
    sweep_dir = Path(hydra_cfg.sweep.dir)
    if (sweep_dir / "multirun.yaml").exists():  # Hydra's basic sweeper: all but the command line's fixed values
        given = task_overrides(OmegaConf.load(sweep_dir / "multirun.yaml").hydra)
        fixed = {o.split("=", 1)[0] for o in given if "=" in o and not any(c in o.split("=", 1)[1] for c in ",(")}
        changed = [o for o in task_overrides(hydra_cfg) if o.split("=", 1)[0] not in fixed and o[:5] != "hydra"]
    else:  # a sweeper that writes no multirun.yaml (Optuna): the keys it searches
        searched = set(hydra_cfg.sweeper.get("params") or {})
        changed = [o for o in task_overrides(hydra_cfg) if o.split("=", 1)[0] in searched]
    name = ",".join(changed).replace("/", "_") or str(hydra_cfg.job.num)
    if len(name.encode()) > 200:  # a folder name holds at most 255 bytes
        name = f"{name.encode()[:180].decode(errors='ignore')}...#{hydra_cfg.job.num}"
    return str(sweep_dir / "tb" / name)


def register_resolvers() -> None:
    """Register the resolvers used in conf/ (idempotent)."""
    for name, fn in (
        ("cnnlab_run_dir", _run_dir),
        ("cnnlab_tensorboard_dir", _tensorboard_dir),
        ("cnnlab_class_folders", class_folder_count),  # data=imagefolder: num_classes from the class folders
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def compose_config(
    overrides: list[str],
    name: str = "train",
    return_hydra_config: bool = False,
    config_dirs: list[str] | tuple[str, ...] = (),
) -> DictConfig:
    """conf/<name>.yaml with Hydra overrides, as the entry points compose it; Hydra's errors become one line.
    `config_dirs` are searched as Hydra searches --config-dir (after conf/; they may hold the primary config)."""
    import yaml
    from hydra import compose
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobRuntime
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    # Inside a job, compose would replace the job's Hydra config and the job name the launcher gives the next jobs
    # of a sweep ("app": their logs went to app.log): both are put back.
    running, job_name = HydraConfig.instance().cfg, JobRuntime.instance().get("name")
    GlobalHydra.instance().clear()
    try:
        # What hydra.main does with its config_path and --config-dir (hydra.initialize_config_dir takes no second dir)
        search = create_config_search_path(config_dir())
        for folder in config_dirs:
            path = folder if "://" in folder else f"file://{Path(folder).resolve()}"
            search.prepend(provider="command-line", path=path, anchor=SearchPathQuery(provider="schema"))
        Hydra.create_main_hydra2(task_name="app", config_search_path=search)
        try:
            return compose(config_name=name, overrides=overrides, return_hydra_config=return_hydra_config)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(hydra_error_line(e, overrides)) from None
        except yaml.YAMLError as e:  # a config file (the user's own, in a searchpath) that is not YAML
            raise ConfigError(yaml_error_line(e)) from None
    finally:
        GlobalHydra.instance().clear()
        JobRuntime.instance().set("name", job_name)
        if running is not None:
            HydraConfig.instance().cfg = running


def compose_checked(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with overrides, as compose_config, with every value checked as cnnlab-train checks it
    (`validate`: types, ranges, keys, `_target_`s): the lab tools' command lines get the same one-line refusals."""
    cfg = compose_config(overrides, return_hydra_config=True)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra") and "@hydra" not in k}
    searchpath = list(cfg.hydra.searchpath)
    cfg = compose_config(overrides)
    validate(cfg, defaults_for(choices, searchpath))
    return cfg


def hydra_error_line(exc: Exception, overrides: list[str] | None = None) -> str:
    """Hydra's composition error as one line with the choices and the fix (`overrides`: the command line's, which
    tell an option given there from one a config file's defaults list names)."""
    text = " ".join(str(exc).split())
    if searched := re.search(r"hydra\.sweeper\.params(\.[\w.]+)?", text):  # the search space: keys hold dots
        key, rest = (searched.group(1) or "").lstrip("."), text[searched.end() :]
        value = re.match(r"='([^']*)'|=(\S+)", rest) if key else None
        value = (value.group(1) or value.group(2)).strip("'") if value else "choice(1,2)"
        return (
            f"hydra.sweeper.params{'.' + key if key else ''}: the search space's keys hold dots, so it is extended "
            f"or changed as a mapping. Fix: '+hydra.sweeper.params={{{key or 'model.width'}:\"{value}\"}}' (quoted "
            f"for the shell), or a search-space file (conf/hparams_search/space/<model>.yaml)."
        )
    if "Could not find '" in text:  # an unknown group option, e.g. model=resnet
        missing = text.split("Could not find '")[1].split("'")[0]
        group, option = missing.rsplit("/", 1) if "/" in missing else ("", missing)
        # Hydra lists the options of every folder it searched (conf/ and the user's: --config-dir, hydra.searchpath)
        listed = re.search(r"Available options in '[^']*': (.*?) Config search path", text)
        options = listed.group(1).split() if listed else []
        options = options or (sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")) if group else [])
        where = _searched_folders(text, group)
        example = options[0] if options else "..."
        typed = [o.lstrip("+~").split("=", 1) for o in (overrides or []) if "=" in o]
        if overrides is None or [group, option] in typed:
            fix = f"Fix: e.g. {group}={example}."
        else:  # not on the command line: a config's defaults list names it (an experiment's `override /model: x`)
            fix = (
                f"Fix: the defaults list of a config names it ('override /{group}: {option}' or '{group}: {option}'); "
                f"change that entry to one of these, e.g. {example}."
            )
        return f"{group}={option} is not a config in {where}. Valid: {', '.join(options)}. {fix}"
    if loaded := re.search(r"In '([^']+)': Could not load '([^']+)'", text):  # a defaults list names a missing file
        parent, missing = loaded.groups()
        group, option = missing.rsplit("/", 1) if "/" in missing else ("", missing)
        own = [Path(p) for p in re.findall(r"path=file://(\S+)", text) if Path(p).resolve() != CONF_DIR]
        built_in = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        options = sorted({*built_in, *(p.stem for folder in own for p in (folder / group).glob("*.yaml"))})
        where = _searched_folders(text, group)
        example = (built_in or options or [""])[0]
        return (
            f"the defaults list of {parent} names {option}, which is not a config in {where}. Valid: "
            f"{', '.join(options)}. Fix: change that entry of {parent}'s defaults list to one of these"
            f"{f', e.g. {example}' if example else ''}."
        )
    if "Could not override '" in text:  # an unknown key, e.g. model.dpth=3
        key = text.split("Could not override '")[1].split("'")[0]
        return (
            f"{key} is not a key of the config. Fix: check its spelling (cnnlab-train --cfg job lists every "
            f"key); an argument the group's _target_ takes can be added with +{key}=..."
        )
    if lexed := re.search(r"LexerNoViableAltException: (\S+?)=(.*?) \^", text):
        key, value = lexed.groups()  # a value the override grammar reads only when quoted
        return (
            f"{key}={value} cannot be read by Hydra's override grammar unquoted (a non-ASCII letter, a space or one "
            f"of ()[]{{}},:='\" in the value). Fix: quote the value for Hydra, inside quotes for the shell: "
            f"'{key}=\"{value}\"'."
        )
    return f"{text.split(' Config search path')[0]} Fix: check the override's spelling and value."


def _searched_folders(text: str, group: str) -> str:
    """'conf/<group>/ nor <user folder>/<group>/ ...': the folders Hydra's error says it searched (conf/ and the
    user's: --config-dir, hydra.searchpath)."""
    own = [p for p in re.findall(r"path=file://(\S+)", text) if Path(p).resolve() != CONF_DIR]
    return " nor ".join(f"{folder}/{group}/" for folder in ["conf", *own])


def yaml_error_line(exc: Exception) -> str:
    """A config file's YAML syntax error as one line naming the file, line and column, and the fix."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "a config file"
    return (
        f"{where} is not valid YAML: {problem}. Fix: correct that line of the file (indentation, a ':' after each "
        f"key, closed brackets and quotes)."
    )


HYDRA_VALUE_FLAGS = {
    "--config-dir": "config_dir",
    "-cd": "config_dir",
    "--config-name": "config_name",
    "-cn": "config_name",
    "--config-path": "config_path",
    "-cp": "config_path",
}


def hydra_flags(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command line without Hydra's flags that take a value (--config-dir/-cd, --config-name/-cn,
    --config-path/-cp, as `--flag value` or `--flag=value`), and those flags' values by name (config_dir, ...)."""
    rest: list[str] = []
    flags: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        flag, equals, value = arg.partition("=")
        if flag not in HYDRA_VALUE_FLAGS:
            rest.append(arg)
            continue
        flags[HYDRA_VALUE_FLAGS[flag]] = value if equals else next(args, "")
    return rest, flags


def checked_config_dirs(config_dir: str | None) -> list[str]:
    """Hydra's --config-dir as the list compose_config's config_dirs takes (empty without one); a --config-dir that
    is not a folder is a ConfigError."""
    if config_dir is None:
        return []
    if not Path(config_dir).is_dir():
        raise ConfigError(
            f"--config-dir {config_dir} is not a folder. Fix: pass the folder that holds your config groups "
            f"(e.g. --config-dir myconf, with myconf/model/mine.yaml), or drop --config-dir."
        )
    return [str(Path(config_dir).resolve())]


def with_config_dir(overrides: list[str], config_dir: str | None) -> list[str]:
    """`overrides` with Hydra's --config-dir added to hydra.searchpath, so that cnnlab's own composing finds the
    configs in it as Hydra does; a --config-dir that is not a folder is a ConfigError."""
    if not checked_config_dirs(config_dir):
        return list(overrides)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    given = [o for o in overrides if o.lstrip("+").split("=", 1)[0] == "hydra.searchpath"]
    paths: list[str] = []
    if given:
        try:
            value = OverridesParser.create().parse_override(given[-1]).value()
        except HydraException:  # Hydra reports its own syntax errors
            return list(overrides)
        paths = [str(p) for p in value] if isinstance(value, list) else []
    paths.append(f"file://{Path(config_dir).resolve()}")
    rest = [o for o in overrides if o not in given]
    return [*rest, f"hydra.searchpath=[{_quoted(paths)}]"]


def _quoted(paths: list[str] | tuple[str, ...]) -> str:
    return ",".join("'" + str(p).replace("\\", "\\\\").replace("'", "\\'") + "'" for p in paths)


# Keys whose default is null or whose valid values have several types: the types they accept.
NULLABLE = {
    "data.train_subset": (int,),
    "threads": (int,),
    "consistency_shift": (int,),
    "tta_select": (float, int),
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
    "data.image_size": (int, list),  # an int is a square (cnnlab.models.image_hw)
    "model.image_size": (int, list),
}
FREE_FORM = ("callbacks", "logger", "data.label_unsafe")  # mappings of the user's own objects: any key


def _between(low: float, high: float, low_open: bool = False, high_open: bool = True) -> Callable[[Any], bool]:
    return lambda v: (low < v if low_open else low <= v) and (v < high if high_open else v <= high)


# key → (valid?, what valid means, an example). Models check their own arguments when they are built.
RANGES: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "seed": (lambda v: 0 <= v < 2**32, "an integer in 0..4294967295 (the seeds numpy and Lightning take)", "0"),
    "label_smoothing": (_between(0, 1), "in [0, 1)", "0.1"),
    "norm_lr_scale": (lambda v: v > 0, "a number > 0", "1.0"),
    "threads": (lambda v: v >= 1, "an integer >= 1 (or null: torch's default)", "2"),
    "tta": (lambda v: v in (0, 1, 2), "0 (off), 1 (mirror) or 2 (mirror + translate)", "0"),
    "tta_select": (_between(0, 1, low_open=True, high_open=False), "in (0, 1] (or null: every image)", "0.7"),
    "consistency_shift": (lambda v: v >= 0, "an integer >= 0 (0: off)", "4"),
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
    "trainer.log_every_n_steps": (lambda v: v >= 0, "an integer >= 0 (0: no per-step logging)", "50"),
    # Lightning Trainer arguments a command line adds with +trainer.<key>=...: Lightning divides by the first two
    # in the middle of the run (a ZeroDivisionError after the run dir opened) and takes a negative clip as "off".
    "trainer.check_val_every_n_epoch": (lambda v: v >= 1, "an integer >= 1 (or null)", "1"),
    "trainer.accumulate_grad_batches": (lambda v: v >= 1, "an integer >= 1", "1"),
    "trainer.gradient_clip_val": (lambda v: v >= 0, "a number >= 0 (0 or null: no clipping)", "1.0"),
    "trainer.min_epochs": (lambda v: v >= 0, "an integer >= 0", "1"),
    "trainer.min_steps": (lambda v: v >= 0, "an integer >= 0", "1"),
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
            except InterpolationKeyError:  # a ${...} to a key that is not there: said as such, not as a wrong type
                raise
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
    group, _, name = key.rpartition(".")
    target = OmegaConf.select(cfg, f"{group}._target_") if group else None
    if not isinstance(target, str):
        return False
    try:
        obj = locate(target)
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
    value overrides) and values out of range, before any data loads. One ConfigError per bad value.
    Then every `_target_` must import and take the keys given to it (`check_targets`)."""
    for key in _missing(cfg):
        try:
            default = OmegaConf.select(defaults, key, default=None, throw_on_missing=False)
        except Exception:  # an interpolation only a running Hydra job resolves
            default = None
        example = MISSING_EXAMPLES.get(key) or ("..." if default is None else _example(key, default))
        raise ConfigError(
            f"{key} has no value: its config marks it mandatory (???). Fix: give it one, e.g. {key}={example} "
            f"(on the command line, or in the YAML file)."
        )
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
            if _target_accepts(cfg, key):  # e.g. +trainer.gradient_clip_val=1.0: an argument its _target_ takes
                _check_range(key, value, None)  # its range, where cnnlab knows it; its type is checked there
                continue
            raise ConfigError(
                f"{key} is not a key of this config, nor an argument of what it builds. Fix: check its spelling "
                f"(cnnlab-train --cfg job lists every key), or remove +{key}."
            )
        default = expected.get(key)
        types = UNION.get(key) or NULLABLE.get(key) or (() if default is None else (type(default),))
        if isinstance(default, ListConfig) and key not in UNION:
            types = (list,)
        if value is None and (default is None or key in NULLABLE):
            continue
        if types and (value is None or not _type_ok(value, types)):
            raise ConfigError(
                f"{key}={value!r} has the wrong type: it must be {_type_names(types)}. "
                f"Fix: e.g. {key}={_example(key, default)}."
            )
        _check_range(key, value, default)
    check_targets(cfg)


def _check_range(key: str, value: Any, default: Any) -> None:
    """A number must be finite, and a key with a known range (RANGES) within it; one ConfigError if not."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value} is not a finite number. Fix: e.g. {key}={_example(key, default)}.")
    if key in RANGES and value is not None and not isinstance(value, ListConfig):
        check, meaning, example = RANGES[key]
        try:  # a key no default types (an argument added with +) may hold a string: out of range too
            valid = check(value)
        except TypeError:
            valid = False
        if not valid:
            raise ConfigError(f"{key}={value!r} is out of range: it must be {meaning}. Fix: e.g. {key}={example}.")


def _example(key: str, default: Any) -> str:
    if key in RANGES:
        return RANGES[key][2]
    if isinstance(default, bool):
        return str(default).lower()
    return "null" if default is None else str(default)


MISSING_EXAMPLES = {"ckpt_path": "<run dir>/checkpoints/best.ckpt"}
# Groups whose entries are built from their own keys alone (cnnlab.training.trainer): each entry must give every
# required argument of its _target_. Other builders may pass arguments of their own (the data gets `augment`).
BUILT_AS_IS = ("callbacks", "logger")
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def _missing(node: Any, prefix: str = "") -> list[str]:
    """The keys whose value is `???` (OmegaConf's mandatory-missing), read without resolving interpolations."""
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    found = []
    for key in keys:
        path = f"{prefix}[{key}]" if isinstance(node, ListConfig) else f"{prefix}{'.' if prefix else ''}{key}"
        if path == "hydra":
            continue
        child = node._get_node(key)
        if child._is_missing():
            found.append(path)
        elif isinstance(child, (DictConfig, ListConfig)) and not child._is_none() and not child._is_interpolation():
            found += _missing(child, path)
    return found


def _targets(node: Any, prefix: str = "") -> list[tuple[str, DictConfig]]:
    """(path, node) of every mapping with a `_target_` (Hydra's own section left out), outermost first."""
    found = []
    if isinstance(node, DictConfig) and "_target_" in node and prefix:
        found.append((prefix, node))
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        path = f"{prefix}[{key}]" if isinstance(node, ListConfig) else f"{prefix}{'.' if prefix else ''}{key}"
        child = node._get_node(key)
        if path != "hydra" and isinstance(child, (DictConfig, ListConfig)):
            if not (child._is_missing() or child._is_none() or child._is_interpolation()):
                found += _targets(child, path)
    return found


def target_parameters(obj: Any) -> tuple[list[str], list[str], bool] | None:
    """What a `_target_` takes: (argument names, required names, whether it also takes any other keyword), through
    the `**kwargs` a class passes on to its bases; None where Python cannot tell (a builtin without a signature).
    Required are the class's own required arguments (what its bases require, it may pass itself)."""
    chain = [c.__init__ for c in inspect.getmro(obj) if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    names: list[str] = []
    required: list[str] = []
    for function in chain:
        if function is object.__init__:
            return names, required, False
        try:
            params = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return None
        if inspect.isclass(obj) and params and params[0].name == "self":
            params = params[1:]
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        names += [p.name for p in named if p.name not in names]
        if function is chain[0]:
            required = [p.name for p in named if p.default is p.empty]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, required, False
    return names, required, True


def locate(target: str) -> Any:
    """The object a `_target_` names (hydra.utils.get_object, without the error it logs: callers report it)."""
    import logging

    from hydra.utils import get_object

    logger = logging.getLogger("hydra.utils")
    disabled, logger.disabled = logger.disabled, True
    try:
        return get_object(target)
    finally:
        logger.disabled = disabled


def _import_problem(exc: BaseException) -> BaseException | None:
    """The reason an import of a `_target_` failed, when it is the config's (no such module or name), else None:
    an error raised while the module itself runs is a bug in it, whose traceback is kept."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return root if isinstance(root, (ModuleNotFoundError, AttributeError)) else None


def _not_importable(where: str, target: str, reason: BaseException) -> ConfigError:
    return ConfigError(
        f"{where}._target_={target} cannot be imported ({type(reason).__name__}: {reason}). Fix: check the dotted "
        f"path (package.module.Name), or install the package that provides it."
    )


def _unexpected(where: str, key: str, target: str, names: list[str]) -> ConfigError:
    return ConfigError(
        f"{where}.{key} is not an argument of {target} (it takes: {', '.join(names) or 'no keyword arguments'}). "
        f"Fix: remove {where}.{key} or rename it, or set {where}._target_ to something that takes it."
    )


def _required(where: str, key: str, target: str) -> ConfigError:
    return ConfigError(
        f"{where}.{key} is required by {target} but not given. Fix: give it, e.g. +{where}.{key}=... on the command "
        f"line, or `{key}: ...` in the YAML file."
    )


def check_targets(cfg: DictConfig) -> None:
    """Every `_target_` in the config imports, and takes the keys its mapping gives it; an entry that is built
    from its keys alone (BUILT_AS_IS) gives all its required arguments. One ConfigError naming the key."""
    for where, node in _targets(cfg):
        target = node._get_node("_target_")._value()
        if not isinstance(target, str) or "${" in target:
            continue
        try:
            obj = locate(target)
        except Exception as e:
            if (reason := _import_problem(e)) is None:
                raise
            raise _not_importable(where, target, reason) from None
        taken = target_parameters(obj)
        if taken is None or "_args_" in node:
            continue
        names, required, any_keyword = taken
        given = [str(k) for k in node if str(k) not in HYDRA_KEYS]
        unexpected = [k for k in given if k not in names]
        if unexpected and not any_keyword:
            raise _unexpected(where, unexpected[0], target, names)
        if where.split(".")[0] in BUILT_AS_IS and not node.get("_partial_", False):
            if missing := [k for k in required if k not in given]:
                raise _required(where, missing[0], target)


def instantiation_error(exc: BaseException) -> ConfigError | None:
    """One line for an error Hydra's `instantiate` raised because of the config, else None (a bug: keep its
    traceback). The config's: a `_target_` that does not import, arguments that do not fit its signature (the call
    itself failed to bind, no frame of the target ran), a package it needs that is not installed, a target Hydra's
    policy refuses, a `???` value never set. An error raised inside the target's code is a bug."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", None) or "a value"
        return ConfigError(f"{key} has no value: its config marks it mandatory (???). Fix: give it one, e.g. {key}=...")
    if not isinstance(exc, InstantiationException):
        return None
    lines = str(exc).splitlines()
    where = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), "") or "the config"
    named = re.search(r"target '([^']+)'", lines[0]) if lines else None
    target = named.group(1) if named else "its _target_"
    cause = exc.__cause__
    if lines and lines[0].startswith("Error locating target"):
        reason = _import_problem(exc)
        return None if reason is None else _not_importable(where, target, reason)
    if cause is None:  # Hydra refused the config itself (e.g. a target its policy blocks)
        text = " ".join(line for line in lines if not line.startswith("full_key:"))
        return ConfigError(f"{where}: {' '.join(text.split())} Fix: change {where}._target_ or its arguments.")
    if isinstance(cause, ModuleNotFoundError):
        return ConfigError(
            f"{where}: {target} needs a package that is not installed ({cause}). Fix: install it (cnnlab's optional "
            f"extras are listed in pyproject.toml, e.g. pip install -e '.[mlflow]')."
        )
    if isinstance(cause, TypeError) and cause.__traceback__ is not None and cause.__traceback__.tb_next is None:
        text = str(cause)
        if unexpected := re.search(r"unexpected keyword argument '(\w+)'", text):
            taken = _parameters_of(target)
            return _unexpected(where, unexpected.group(1), target, taken[0] if taken else [])
        if "missing" in text and (required := re.findall(r"'(\w+)'", text.split("missing", 1)[1])):
            return _required(where, required[0], target)
        return ConfigError(f"{where}: the arguments do not fit {target} ({text}). Fix: match its signature.")
    return None


def _parameters_of(target: str) -> tuple[list[str], list[str], bool] | None:
    try:
        return target_parameters(locate(target))
    except Exception:
        return None


def startup_error(exc: BaseException) -> ConfigError | None:
    """Hydra's own error before or between jobs (composing the command line, a sweep's overrides) as one line;
    None for anything else."""
    import traceback

    import yaml
    from hydra.errors import HydraException, InstantiationException

    if isinstance(exc, yaml.YAMLError):  # a config file Hydra read (--config-dir, hydra.searchpath) is not YAML
        return ConfigError(yaml_error_line(exc))
    if isinstance(exc, HydraException) and not isinstance(exc, InstantiationException):
        return ConfigError(hydra_error_line(exc, sys.argv[1:]))
    parsing = {"create_optuna_distribution_from_override", "create_params_from_overrides"}
    if isinstance(exc, (ValueError, TypeError)) and any(
        frame.f_code.co_name in parsing for frame, _ in traceback.walk_tb(exc.__traceback__)
    ):  # Optuna refused a distribution of the search space
        return ConfigError(
            f"the search space has a distribution Optuna refuses: {' '.join(str(exc).split())} Fix: check "
            f"hydra.sweeper.params (conf/hparams_search/optuna.yaml, conf/hparams_search/space/<model>.yaml, and "
            f"the command line)."
        )
    if type(exc).__module__.split(".")[0] == "sqlalchemy":  # Optuna opening hydra.sweeper.storage
        return ConfigError(
            f"hydra.sweeper.storage cannot be opened as Optuna's study database ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}). Fix: hydra.sweeper.storage=sqlite:///<a writable folder>/optuna.db, "
            f"or hydra.sweeper.storage=null for a study kept in memory."
        )
    return None


def defaults_for(choices: dict[str, Any], searchpath: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config the same group choices give without value overrides: the reference for types. `searchpath`
    (hydra.searchpath) finds the options that live in the user's own config folders; inside a Hydra job, so do
    the job's --config-dir and its --config-name (a primary config of the user's own)."""
    from hydra.core.hydra_config import HydraConfig

    picked = [
        f"{k}=[{','.join(v)}]" if isinstance(v, (list, ListConfig)) else f"{k}={v}"
        for k, v in choices.items()
        if v is not None and not k.startswith("hydra") and "@hydra" not in k
    ]
    dirs, name = [], "train"  # eval.yaml adds no keys to train.yaml
    if (job := HydraConfig.instance().cfg) is not None:
        sources = OmegaConf.select(job, "hydra.runtime.config_sources", default=None) or []
        dirs = [str(s.path) for s in sources if s.get("provider") == "command-line"]
        own = OmegaConf.select(job, "hydra.job.config_name", default=None)
        if own and not (CONF_DIR / f"{own}.yaml").exists():  # the user's own primary config
            name = own
    if searchpath:
        picked.append(f"hydra.searchpath=[{_quoted(list(searchpath))}]")
    return compose_config(picked, name=name, config_dirs=dirs)
