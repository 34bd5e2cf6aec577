"""Hydra callbacks: a multirun ends with a count of its failed jobs (non-zero exit), and an Optuna study summary."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cnnlab.config import task_overrides
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.runs import read_metrics

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("cnnlab")


def job_statuses(sweep_dir: Path) -> dict[str, str]:
    """Job directory name → status from its metrics.json ('missing' where it wrote none)."""
    statuses = {}
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()):
        try:
            record = read_metrics(job_dir)
        except CnnlabError:  # a damaged record: the job counts as not completed, the summary still ends
            record = {"status": "unreadable"}
        statuses[job_dir.name] = record.get("status", "unknown") if record else "missing"
    return statuses


class SweepSummary(Callback):
    """After a multirun: log how many jobs completed; exit 1 if any failed, so scripts notice."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        statuses = job_statuses(sweep_dir)
        bad = {job: status for job, status in statuses.items() if status != "completed"}
        log.info("sweep %s: %d of %d jobs completed", sweep_dir, len(statuses) - len(bad), len(statuses))
        if bad:
            details = ", ".join(f"job {job}: {status}" for job, status in bad.items())
            log.error(
                "%d of %d jobs did not complete (%s); each job's metrics.json holds its error. "
                "Summarise with: cnnlab-compare %s",
                len(bad),
                len(statuses),
                details,
                sweep_dir,
            )
            sys.exit(1)


OPTUNA_SUMMARY = "optuna_summary.json"


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's job directories in job order (9 before 10)."""
    return sorted(
        (p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()),
        key=lambda p: (len(p.name), p.name),
    )


def _sqlite_file(storage: str | None) -> Path | None:
    """The database file of a `sqlite:///<path>` storage URL, else None."""
    prefix = "sqlite:///"
    return Path(storage[len(prefix) :]) if storage and storage.startswith(prefix) else None


def _number(text: str) -> Any:
    """An override's value as Hydra typed it: int, float (YAML reads `1e-05` as a string), else YAML."""
    import yaml

    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def study_from_jobs(sweep_dir: Path, search_space: dict[str, str], direction: str) -> optuna.Study:
    """An in-memory Optuna study rebuilt from the sweep's jobs (overrides, metrics.json), when it has no storage."""
    import optuna
    import yaml

    # The sweeper's own parser turns `interval(...)`, `choice(...)`, `range(...)` into Optuna distributions.
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    distributions, _ = create_params_from_overrides([f"{k}={v}" for k, v in search_space.items()])
    study = optuna.create_study(direction=direction)
    for job_dir in _job_dirs(sweep_dir):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()))
        params = {k: _number(overrides[k]) for k in distributions if k in overrides}
        record = read_metrics(job_dir) or {}
        value = record.get("val_acc_best")
        done = record.get("status") == "completed" and value is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # create_trial: stable since 2.0
            study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    value=float(value) if done else None,
                    state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.FAIL,
                )
            )
    return study


def summarise_study(study: optuna.Study) -> dict[str, Any]:
    """Best trial, trial counts by state and (where Optuna can compute them) parameter importances."""
    import optuna

    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "direction": study.direction.name,
        "n_trials": len(study.trials),
        "trials_by_state": counts,
    }
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params}
    try:
        importances = optuna.importance.get_param_importances(study)
        summary["param_importances"] = {k: round(float(v), 6) for k, v in importances.items()}
    except ImportError as e:
        summary["param_importances"] = None
        summary["param_importances_unavailable"] = (
            f"Optuna's importance evaluator needs a package that is not installed ({e}). Fix: pip install scikit-learn."
        )
    except (RuntimeError, ValueError) as e:  # e.g. fewer than two completed trials, or one value for every param
        summary["param_importances"] = None
        summary["param_importances_unavailable"] = str(e)
    return summary


def _check_storage_support(storage: str) -> None:
    """Optuna 2.x (what hydra-optuna-sweeper 1.3 allows) cannot open a database through SQLAlchemy 2."""
    import optuna
    import sqlalchemy

    if int(optuna.__version__.split(".")[0]) < 3 and int(sqlalchemy.__version__.split(".")[0]) >= 2:
        log.error(
            "hydra.sweeper.storage=%s needs SQLAlchemy 1.4 with optuna %s, but SQLAlchemy %s is installed. "
            "Fix: pip install 'sqlalchemy==1.4.54' 'alembic==1.13.3' (as pyproject.toml pins), or "
            "hydra.sweeper.storage=null for an in-memory study.",
            storage,
            optuna.__version__,
            sqlalchemy.__version__,
        )
        sys.exit(2)


SPACE_GROUP = "hparams_search/space"  # <model>.yaml: a model's own search space (conf/hparams_search/optuna.yaml)


def _has_key(config: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, parent) if parent else config
    return isinstance(node, DictConfig) and leaf in node


def check_search_space(config: DictConfig) -> None:
    """Before the first trial: every searched key must be a key of the config (a ConfigError naming it, so the
    sweep ends in one line before it creates anything); a model without a space of its own gets a one-line note."""
    choices = config.hydra.runtime.choices
    model = choices.get("model")
    space = dict(config.hydra.sweeper.params or {})
    for key in space:
        if key.startswith(("+", "~")) or "/" in key:  # an addition, a deletion, a config group: Hydra's to check
            continue
        if not _has_key(config, key):
            raise ConfigError(
                f"hydra.sweeper.params searches {key}, which is not a key of this config (model={model}). Fix: "
                f"search only keys the config has (cnnlab-train model={model} --cfg job lists them); a model's own "
                f"space belongs in conf/{SPACE_GROUP}/{model}.yaml."
            )
    from cnnlab.config import CONF_DIR

    folders = [CONF_DIR] + [
        Path(str(e).removeprefix("file://"))
        for e in config.hydra.searchpath
        if "://" not in str(e) or str(e).startswith("file://")
    ]
    loaded = any((folder / SPACE_GROUP / f"{model}.yaml").exists() for folder in folders)  # Hydra's optional default
    if model and not loaded:
        log.warning(
            "model=%s has no search space of its own (conf/%s/%s.yaml): searching %s only.",
            model,
            SPACE_GROUP,
            model,
            ", ".join(space) or "nothing",
        )


class OptunaSummary(Callback):
    """Before an Optuna multirun: check its storage can work. After: write optuna_summary.json into the sweep dir,
    covering the whole study (every run that continued it) when hydra.sweeper.storage is set."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        try:
            check_search_space(config)
        except ConfigError as e:  # Hydra turns a callback's exception into a warning: end the command here
            log.error("%s", e)
            sys.exit(2)
        storage = sweeper.get("storage")
        if not storage:
            return
        _check_storage_support(storage)
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir() and any((d / "metrics.json").exists() for d in _job_dirs(sweep_dir)):
            # Job numbers restart at 0, so every new trial would find its directory taken and fail into the study.
            log.error(
                "hydra.sweep.dir=%s already holds the jobs of an earlier sweep; continuing the study %r needs a "
                "fresh sweep directory for its new trials. Fix: leave hydra.sweep.dir at its default "
                "(a new timestamped folder), or choose a new one.",
                sweep_dir,
                sweeper.get("study_name"),
            )
            sys.exit(2)
        db = _sqlite_file(storage)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import optuna

        sweeper, sweep_dir = config.hydra.sweeper, Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        storage = sweeper.get("storage")
        if storage:
            study = optuna.load_study(study_name=sweeper.study_name, storage=storage)
        else:
            # As the sweeper does: command-line overrides of a searched key replace it (a plain value fixes it).
            space = dict(sweeper.params or {})
            space.update(o.split("=", 1) for o in task_overrides(config.hydra) if o.split("=", 1)[0] in space)
            study = study_from_jobs(sweep_dir, space, sweeper.direction)
        summary = {**summarise_study(study), "storage": storage, "sweep_dir": str(sweep_dir)}
        if not storage:
            summary["study_name"] = sweeper.get("study_name")
        path = sweep_dir / OPTUNA_SUMMARY
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        log.info(
            "optuna study %r: %d trials %s; best %s → %s",
            summary["study_name"],
            summary["n_trials"],
            summary["trials_by_state"],
            summary.get("best", {}).get("value"),
            path,
        )
