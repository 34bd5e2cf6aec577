"""The run policy every console script shares: run directories, records, exit codes.

- A run directory that holds a `metrics.json` is finished: no command changes it, except that run's own
  resume. A refused command writes nothing anywhere.
- Hydra writes nothing into a run directory itself (`hydra.output_subdir: null`, no log file handler);
  `open_run_dir` does, after the directory has been accepted.
- Records are written atomically, by rank zero only.
- Exit codes: 0 done, 1 a bug (with its traceback) or a sweep with failed jobs, 2 bad input (one line,
  no traceback), 128+N stopped by signal N.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console

from cnnlab import config
from cnnlab.crash_watch import CrashWatch
from cnnlab.errors import CnnlabError, ConfigError, RunInterrupted, quiet_disk_errors_in_threads, user_error

log = logging.getLogger("cnnlab")
# Third-party chatter that says nothing about the run (internal deprecations, advertising tips).
NOISE = (
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*smaller than the logging interval.*",
    ".*does not have many workers.*",
    ".*You're resuming from a checkpoint that ended before the epoch ended.*",
    ".*The `srun` command is available on your system but is not used.*",  # where SLURM is installed
    ".*callbacks used to create the checkpoint need to be provided.*",  # eval needs only the weights
)
METRICS_FILE = "metrics.json"
EXIT_BAD_INPUT = 2


def rank() -> int:
    """This process's global rank under torch.distributed launchers (0 when not distributed)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's metrics.json as a dict, or None if it has none; a damaged file is a CnnlabError."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CnnlabError(
            f"{path} could not be read ({type(e).__name__}: {e}). Fix: remove the damaged file "
            f"or the run directory that holds it."
        ) from None
    if not isinstance(record, dict):
        raise CnnlabError(f"{path} does not hold a JSON object. Fix: remove the damaged file.")
    return record


def _json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as null: json would write bare NaN, which strict JSON readers refuse.
    Scalars of other types (a tensor, a numpy number) become floats first."""
    if not isinstance(value, (str, bytes, int, float, dict, list, tuple, type(None))) and hasattr(value, "__float__"):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_metrics(run_dir: str | Path, record: dict[str, Any]) -> Path | None:
    """Atomically write `record` to run_dir/metrics.json (rank zero only; other ranks write nothing)."""
    if rank() != 0:
        return None
    path = Path(run_dir) / METRICS_FILE
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metrics.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "w") as f:
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the record is as readable as any other file
            f.write(json.dumps(_json_safe(record), indent=2, sort_keys=True, default=float, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except BaseException as e:  # a full disk: the previous record (if any) stays whole, and no temp file stays
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:  # a failed write() names no file: the one-line error does
            e.filename = str(path)
        raise
    return path


def check_writable(path: Path, what: str, fix: str) -> None:
    """Raise a CnnlabError unless `path` is (or can be created as) a writable directory."""
    try:  # a name longer than NAME_MAX (255 bytes) or a path past PATH_MAX: stat itself raises ENAMETOOLONG
        path.exists()
        [p.is_symlink() for p in path.parents]
    except OSError as e:
        longest = max(path.parts, key=lambda part: len(os.fsencode(part)))
        raise CnnlabError(
            f"{what} {path} cannot be used ({e.strerror}): its longest name is {len(os.fsencode(longest))} bytes "
            f"and the whole path {len(os.fsencode(str(path)))} (the file system allows 255 and 4,095). Fix: {fix}"
        ) from None
    if path.exists() and not path.is_dir():
        raise CnnlabError(f"{what} {path} is a file, not a directory. Fix: {fix}")
    if dangling := next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None):
        raise CnnlabError(
            f"{what} {path}: {dangling} is a link to {os.readlink(dangling)}, which does not exist. Fix: {fix}"
        )
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CnnlabError(f"{what} {path} cannot be written ({existing} is not a writable folder). Fix: {fix}")


def enclosing_run(path: Path) -> Path | None:
    """The run directory `path` is or lies inside (the nearest folder holding a metrics.json), or None."""
    path = Path(path).absolute()
    return next((p for p in (path, *path.parents) if (p / METRICS_FILE).is_file()), None)


def check_outside_runs(path: Path, what: str, fix: str, itself: bool = True) -> None:
    """Refuse a folder to write into that is a run directory (unless not `itself`) or lies inside one: a run's
    folder is its record and never changes."""
    run = enclosing_run(path if itself else Path(path).absolute().parent)
    if run is None:
        return
    where = "is a run directory" if run == Path(path).absolute() else f"lies inside the run directory {run}"
    raise CnnlabError(f"{what} {path} {where}: its files are that run's record and never change. Fix: {fix}")


def check_own_folder(path: Path, what: str, fix: str) -> None:
    """Refuse, for a new run, the current folder or a folder that holds runs below it: the run's files would mix
    with theirs, and every later run under it would lie inside a run directory."""
    path = Path(path).absolute()
    if path == Path.cwd():
        raise CnnlabError(f"{what} {path} is the current folder: a run needs a folder of its own. Fix: {fix}")
    if path.is_dir():
        held = next(
            (m.parent for depth in range(1, 5) for m in path.glob("/".join(["*"] * depth) + f"/{METRICS_FILE}")), None
        )
        if held is not None:
            raise CnnlabError(
                f"{what} {path} holds other runs (e.g. {held}): a run needs a folder of its own. Fix: {fix}"
            )


def check_report_dir(path: Path, what: str, fix: str) -> None:
    """A folder a report or figures may go into: writable, and not a run directory nor inside one."""
    check_writable(path, what, fix)
    check_outside_runs(path, what, fix)


def open_run_dir(run_dir: Path, cfg: Any, resuming: bool) -> logging.Handler | None:
    """Accept `run_dir` for this job, then save its config and start its log file.

    A finished run is refused unless this job resumes it; a resumed run keeps its original `.hydra/`
    and gets its resume's config beside it in `.hydra/resume-<time>/`.
    """
    fix = "choose another hydra.run.dir (or hydra.sweep.dir)."
    check_writable(run_dir, "output directory", fix)
    check_outside_runs(run_dir, "output directory", fix, itself=False)  # itself: resume's question, below
    _lock_run_dir(run_dir)
    previous = read_metrics(run_dir)
    if previous is not None and not resuming:
        raise CnnlabError(
            f"{run_dir} already holds a run (status {previous.get('status')}); it is never "
            f"overwritten. Fix: choose another hydra.run.dir, or resume it with resume={run_dir}."
        )
    if previous is None:
        check_own_folder(run_dir, "output directory", fix)
    if resuming:  # a save the process was killed in (SIGKILL, power) left its partial file: never a checkpoint
        for partial in (run_dir / "checkpoints").glob(".*.partial"):
            partial.unlink()
    return save_run_files(run_dir, cfg, resuming)


# The run directories this process holds, each by an open descriptor with an exclusive flock on it: the lock
# goes with the descriptor, so it ends with the job (unlock) or with the process, however that ends.
_LOCKED: dict[Path, int] = {}


def _lock_run_dir(run_dir: Path) -> None:
    """Take run_dir for this job (rank zero, where the OS has flock): a second process aimed at it is refused."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks on folders
        return
    if rank() != 0 or Path(run_dir) in _LOCKED:
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CnnlabError(
            f"{run_dir} is in use by another cnnlab process that is writing its run. Fix: choose another "
            f"hydra.run.dir, or wait until that run ends."
        ) from None
    _LOCKED[Path(run_dir)] = fd


def _unlock_run_dir(run_dir: Path) -> None:
    fd = _LOCKED.pop(Path(run_dir), None)
    if fd is not None:
        os.close(fd)


def save_run_files(run_dir: Path, cfg: Any, resuming: bool) -> logging.Handler | None:
    """Write .hydra/ (config, hydra, overrides) and attach <run dir>/<job>.log; rank zero only."""
    from hydra.core.hydra_config import HydraConfig

    if rank() != 0:
        return None
    hydra_cfg = HydraConfig.get()
    subdir = run_dir / (f".hydra/resume-{datetime.now():%Y%m%d-%H%M%S-%f}" if resuming else ".hydra")
    existed = subdir.exists()
    subdir.mkdir(parents=True, exist_ok=True)
    try:
        OmegaConf.save(cfg, subdir / "config.yaml")
        OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), subdir / "hydra.yaml")
        OmegaConf.save(OmegaConf.create(config.task_overrides(hydra_cfg)), subdir / "overrides.yaml")
    except OSError:  # a full disk: the refused run leaves no empty config.yaml behind (it did, 0 bytes)
        if not existed:
            shutil.rmtree(subdir, ignore_errors=True)
        raise
    handler = logging.FileHandler(run_dir / f"{hydra_cfg.job.name}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def task_choices(hydra_cfg: Any) -> dict[str, Any]:
    """The run's config group choices (data, model, ...), without Hydra's own groups and the groups packaged into
    Hydra's section (hparams_search/space@hydra.sweeper.params)."""
    return {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra") and "@hydra" not in k}


# The output directory (run dir, or sweep dir) of the Hydra command in this process and the deepest of its
# folders that existed before the command: what a refused command may remove again. Set by OutputDirs.
_OUTPUT: tuple[Path, Path] | None = None
_STARTED = 0.0  # when this process's command started (time.time()): what it may have begun in a shared store


def note_output_dir(path: Any) -> None:
    """Note, before it is created, which folders of this command's output directory already exist."""
    global _OUTPUT
    output = Path(str(path)).absolute()
    _OUTPUT = (output, next(p for p in (output, *output.parents) if p.exists()))


class OutputDirs(Callback):
    """Notes, before Hydra creates it, which folders of the run or sweep directory already exist, so that a
    command refused before it wrote anything leaves no empty folders behind (`remove_created`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        note_output_dir(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        note_output_dir(config.hydra.sweep.dir)


def remove_created(path: Path, leftovers: tuple[str, ...] = ()) -> None:
    """Remove `path` if it holds nothing (but `leftovers`, files Hydra wrote), and the folders above it this command
    created, as far as they are empty. Without a note from OutputDirs (in-process callers) only `path` itself."""
    path = Path(path).absolute()
    output, existed = _OUTPUT if _OUTPUT is not None else (path, path.parent)
    if path != output or not path.is_dir() or path == existed:
        if path != output and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        return
    if any(p.name not in leftovers or not p.is_file() for p in path.iterdir()):
        return
    for p in path.iterdir():
        p.unlink()
    for folder in (path, *path.parents):
        if folder == existed or not folder.is_relative_to(existed):
            break
        try:
            folder.rmdir()
        except OSError:  # not empty: another run's folder, or written meanwhile
            break


def run_job(
    cfg: DictConfig, check: Callable[[DictConfig, Path], Any], job: Callable[[DictConfig, Path, Any], dict[str, Any]]
) -> float | None:
    """Run one Hydra job under the policy: check everything, then write; record how it ended.

    `check(cfg, run_dir)` raises CnnlabError for bad input before anything is written (its result goes to
    `job`); `job(cfg, run_dir, checked)` returns the record's numbers. A single run exits with the policy's
    code; in a sweep the job's record holds its error and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    quiet()
    hydra_cfg = HydraConfig.get()
    run_dir, multirun = Path(hydra_cfg.runtime.output_dir), hydra_cfg.mode == RunMode.MULTIRUN
    choices = task_choices(hydra_cfg)
    record: dict[str, Any] = {
        "status": "running",
        "seed": cfg.get("seed"),
        "overrides": config.task_overrides(hydra_cfg),
        "choices": choices,
    }
    resuming = bool(cfg.get("resume")) or cfg.get("ckpt_path") == "last"
    try:
        return _run_job(cfg, check, job, run_dir, multirun, record, resuming)
    finally:
        _unlock_run_dir(run_dir)


def _run_job(
    cfg: DictConfig,
    check: Callable[[DictConfig, Path], Any],
    job: Callable[[DictConfig, Path, Any], dict[str, Any]],
    run_dir: Path,
    multirun: bool,
    record: dict[str, Any],
    resuming: bool,
) -> float | None:
    """run_job's body, with the run dir's lock held by the caller until it returns."""
    from hydra.core.hydra_config import HydraConfig

    start = time.perf_counter()
    try:
        config.validate(cfg, config.defaults_for(record["choices"], list(HydraConfig.get().searchpath)))
        checked = check(cfg, run_dir)
        log_file = open_run_dir(run_dir, cfg, resuming)
    except KeyboardInterrupt:
        if not resuming and read_metrics(run_dir) is None:  # what this job began to write, and nothing else
            shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
            (run_dir / f"{HydraConfig.get().job.name}.log").unlink(missing_ok=True)
            remove_created(run_dir)
        raise
    except Exception as e:
        cause = user_error(e)
        if cause is None:
            if not multirun:
                remove_created(run_dir)  # a bug, before anything was written: its traceback follows
            raise
        log.error("%s", cause)
        if multirun and run_dir.is_dir() and not any(run_dir.iterdir()):  # a new sweep job records its failure
            handler = save_run_files(run_dir, cfg, resuming=False)
            if handler is not None:
                logging.getLogger().removeHandler(handler)
                handler.close()
            write_metrics(run_dir, {**record, "status": "failed", "error": str(cause), "wall_s": 0.0})
        else:
            remove_created(run_dir)  # the empty folders Hydra made for this refused run
        return _end(multirun, EXIT_BAD_INPUT, str(cause))
    global _WATCH
    if rank() == 0:  # a process that dies without a record (SIGSEGV in native code, the OOM killer) still gets one
        next_step = (
            "Run the evaluation again, in a new folder."
            if HydraConfig.get().job.name == "eval"
            else f"Resume with: cnnlab-train resume={run_dir}"
        )
        _WATCH = CrashWatch(run_dir, record, Path(log_file.baseFilename) if log_file else None, next_step)
    faults_shown = faulthandler.is_enabled()  # pytest shows them on stderr; a notebook has a stderr without a fileno
    if log_file is not None:  # a fatal signal's Python stack goes into the job's log, where the watcher reads it
        faulthandler.enable(file=log_file.stream, all_threads=True)
    try:
        with _stopping_signals_interrupt(run_dir):
            return _run_checked(run_dir, multirun, record, start, lambda: job(cfg, run_dir, checked))
    finally:
        if _WATCH is not None:
            _WATCH.done()
            _WATCH = None
        if log_file is not None:  # in-process callers (tests, notebooks) run several jobs in one process
            faulthandler.disable()
            if faults_shown:
                with contextlib.suppress(OSError, ValueError):  # a stderr without a file descriptor
                    faulthandler.enable(file=sys.__stderr__, all_threads=True)
            logging.getLogger().removeHandler(log_file)
            log_file.close()


_WATCH: CrashWatch | None = None  # the running job's crash watch (rank zero), told each finished epoch


def note_epochs_done(epochs: int) -> None:
    """Tell the running job's crash watch how many epochs have finished (what its record says after a crash)."""
    if _WATCH is not None:
        _WATCH.epochs_done(epochs)


# Signals that stop a run. Inside the training loop GracefulInterrupt (cnnlab.training.callbacks) takes them over;
# outside it (building the model and trainer, the final test) each stops the job as RunInterrupted, which the record
# takes: SIGTERM's default would kill the process with no record, and a KeyboardInterrupt inside trainer.test becomes
# Lightning's exit(1), with no record either.
_STOPPING = ("SIGINT", "SIGTERM", "SIGUSR2")


@contextlib.contextmanager
def _stopping_signals_interrupt(run_dir: Path) -> Any:
    """While an accepted job runs, SIGINT/SIGTERM/SIGUSR2 raise RunInterrupted, once: a later one, or one while the
    record is being written, is ignored, so the record is never abandoned half-way."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    raised: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if raised or _SAVING:  # already stopping, or writing the record: let that finish
            raised.append(signum)
            return
        raised.append(signum)
        from hydra.core.hydra_config import HydraConfig

        last = run_dir / "checkpoints" / "last.ckpt"
        if HydraConfig.get().job.name == "eval":
            kept = "the evaluation did not finish"
        else:
            kept = f"{last} holds the last completed epoch" if last.is_file() else "no epoch had ended (no checkpoint)"
        raise RunInterrupted(
            f"{signal.Signals(signum).name} received outside the training loop (setting up or testing); {kept}.",
            signum,
        )

    previous = {sig: signal.signal(sig, handler) for sig in (getattr(signal, n, None) for n in _STOPPING) if sig}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def _run_checked(
    run_dir: Path,
    multirun: bool,
    record: dict[str, Any],
    start: float,
    job: Callable[[], dict[str, Any]],
) -> float | None:
    """Run the accepted job and record how it ended."""
    code, said = 0, None
    try:
        record.update(job(), status="completed")
    except RunInterrupted as e:
        record.update(status="interrupted", error=str(e), signal=e.signum)
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.get().job.name != "eval":
            log.warning("%s Resume with: cnnlab-train resume=%s (plus the same overrides).", e, run_dir)
        else:  # an evaluation has nothing to resume
            log.warning("%s Run the command again to finish it (in a new folder).", e)
        code = 128 + e.signum
    except KeyboardInterrupt:  # outside the training loop (loading data, testing): the record says so, then exit 130
        record.update(status="interrupted", error="stopped by Ctrl+C outside the training loop.", signal=2)
        if unsaved := _save(run_dir, record, start):
            log.error("%s", unsaved)
        raise
    except Exception as e:
        cause = user_error(e)
        record.update(status="failed", error=str(cause) if cause else f"{type(e).__name__}: {e}")
        if cause is None:  # a bug: keep the traceback in the job's log; a single run re-raises it below
            log.exception("job failed")
        else:
            said = str(cause)  # logged with the record's fate below: one line, also when the disk is full
        code = EXIT_BAD_INPUT if cause else 1
        if cause is None and not multirun:
            if unsaved := _save(run_dir, record, start):
                log.error("%s", unsaved)
            raise
    unsaved = _save(run_dir, record, start)
    if said is not None:
        log.error("%s%s", said, f" Then {unsaved}" if unsaved else "")
    elif unsaved:
        log.error("%s", unsaved)
    if code > 128 and multirun and _in_process_jobs():  # Ctrl+C stops the sweep, not only the job it landed in
        raise RunEnded(code, record["error"])
    return record.get("val_acc_best", record.get("test_acc")) if code == 0 else _end(multirun, code, record["error"])


def _in_process_jobs() -> bool:
    """Whether this sweep's jobs run one after another in this process (Hydra's basic launcher). Under joblib or
    submitit each job has its own process, and a signal (SLURM's SIGUSR2 before the time limit) is that job's."""
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().launcher.get("_target_", "")).endswith("BasicLauncher")


_SAVING = False  # while a record is written: a stopping signal waits for it (_stopping_signals_interrupt)


def _save(run_dir: Path, record: dict[str, Any], start: float) -> str | None:
    """Write the job's record; return why it could not be written (a full disk: one sentence), else None."""
    global _SAVING
    record["wall_s"] = round(time.perf_counter() - start, 3)
    _SAVING = True
    try:
        write_metrics(run_dir, record)
    except OSError as e:
        if user_error(e) is None:
            raise
        return f"the run's record could not be written, so {run_dir} has no metrics.json: {user_error(e)}"
    finally:
        _SAVING = False
    return None


class RunEnded(SystemExit):
    """A single run ended with a non-zero exit code; `reason` says why in one line (for in-process callers)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code)
        self.reason = reason


def _end(multirun: bool, code: int, reason: str) -> None:
    """A single run exits with `code` now; in a sweep the job is recorded and the sweep goes on."""
    if not multirun:
        raise RunEnded(code, reason)
    return None


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The config as flat 'group/key' scalars for TensorBoard's HParams tab."""
    from hydra.core.hydra_config import HydraConfig

    flat: dict[str, Any] = {f"choice/{k}": str(v) for k, v in task_choices(HydraConfig.get()).items()}
    for group in ("model", "optim", "schedule"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if not key.startswith("_"):
                flat[f"{group}/{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    flat.update(
        {
            "seed": cfg.seed,
            "label_smoothing": cfg.label_smoothing,
            "data/batch_size": cfg.data.batch_size,
            "data/train_subset": str(cfg.data.train_subset),
            "trainer/max_epochs": cfg.trainer.max_epochs,
        }
    )
    return flat


def console() -> Console:
    """A rich console at least 120 columns wide, so tables stay readable in logs and pipes."""
    return Console(width=None if sys.stdout.isatty() else 120)


def bad_input(message: str) -> None:
    """Print one line for the user and exit 2 (no traceback)."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(EXIT_BAD_INPUT)


def _hydra_overrides(argv: list[str]) -> list[str] | None:
    """The overrides of a plain (non-multirun, non-help) Hydra command line, or None to let Hydra handle it.
    Hydra's --config-dir (-cd) and --config-name (-cn) are left out of them (config.hydra_flags reads those)."""
    flags = [i for i, a in enumerate(argv) if a in ("-m", "--multirun")]
    if flags and any("=" in a for a in argv[: flags[0]]) and any("=" in a for a in argv[flags[0] + 1 :]):
        moved = [argv[flags[0]], *(a for i, a in enumerate(argv) if i != flags[0])]
        raise ConfigError(  # Hydra's argparse would print its usage: 9 lines that do not say this
            f"{argv[flags[0]]} comes before the overrides. Fix: {Path(sys.argv[0]).name} {' '.join(moved)}"
        )
    for i, arg in enumerate(argv):  # argparse takes the overrides in one run: a flag between them splits it
        width = 1 if "=" in arg or arg not in config.HYDRA_VALUE_FLAGS else 2
        if (
            arg.split("=", 1)[0] in config.HYDRA_VALUE_FLAGS
            and any("=" in a and not a.startswith("-") for a in argv[:i])
            and any("=" in a and not a.startswith("-") for a in argv[i + width :])
        ):
            moved = [*argv[i : i + width], *argv[:i], *argv[i + width :]]
            raise ConfigError(
                f"{arg.split('=', 1)[0]} comes before the overrides. Fix: {Path(sys.argv[0]).name} {' '.join(moved)}"
            )
    rest, given = config.hydra_flags(argv)
    if "config_path" in given or any(a.startswith("-") for a in rest):  # --cfg, --info, --help, -m: Hydra's own
        return None
    return rest


def _sweep_dir(argv: list[str], config_name: str) -> Path | None:
    """The sweep directory of a multirun command line (from its hydra.* overrides), or None: not a multirun, or a
    sweep dir that depends on the swept values (each job's own check covers it then)."""
    if not any(a in ("-m", "--multirun") for a in argv):
        return None
    hydra_args = [a for a in argv if a.lstrip("+~").startswith("hydra.")]
    try:
        return Path(str(config.compose_config(hydra_args, name=config_name, return_hydra_config=True).hydra.sweep.dir))
    except Exception:  # Hydra itself reports what does not compose
        return None


def check_swept_values(overrides: list[str], config_name: str) -> None:
    """Check the type, range and key of each value a multirun sweeps (`seed=0,abc`, `optim.lr=0.1,-1`), with the
    other overrides, before the first job starts: a bad one used to fail only its own job, after the jobs before it
    had run. What needs the model or the data (a depth the image cannot take) is each job's check, which the job's
    record keeps; values a search draws (Optuna's intervals) are left to the jobs too."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return  # Hydra reports its own syntax errors
    base = [o.input_line for o in parsed if not o.is_sweep_override()]
    for override in parsed:
        if not override.is_sweep_override() or override.key_or_group.startswith("hydra"):
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:  # an interval: drawn by a search
            continue
        for value in values:
            config.compose_checked([*base, f"{override.get_key_element()}={value}"])


def _drop_tips(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("💡 Tip")


def quiet() -> None:
    """Install the warning filters, drop Lightning's 'Tip' advertisements, and keep a full disk's traceback in
    TensorBoard's writer thread off the screen (the run ends in one line for it)."""
    import warnings

    quiet_disk_errors_in_threads()

    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_drop_tips)  # a set: added once


def _raised_in_job(exc: BaseException) -> bool:
    """Whether `exc` came out of run_job (which has already decided what it is), not out of Hydra around it."""
    import traceback

    return any(frame.f_code is run_job.__code__ for frame, _ in traceback.walk_tb(exc.__traceback__))


def _changed_space(exc: BaseException, config_name: str | None) -> ConfigError | None:
    """A stored Optuna study continued with another search space: Optuna refuses the new distribution after it has
    opened a trial. That trial (started by this command) is marked failed, so the study holds none left RUNNING."""
    text = " ".join(str(exc).split())
    if not (isinstance(exc, ValueError) and ("dynamic value space" in text or "different distribution" in text)):
        return None
    if config_name is None:
        return None
    # The sweeper's settings, from the command line's Hydra overrides (the swept values would not compose).
    hydra_args = [a for a in sys.argv[1:] if a.lstrip("+~").startswith(("hydra.", "hparams_search"))]
    sweeper = config.compose_config(hydra_args, name=config_name, return_hydra_config=True).hydra.sweeper
    storage, name = sweeper.get("storage"), sweeper.get("study_name")
    if not storage:
        return None
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=name, storage=storage)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.datetime_start is not None and trial.datetime_start.timestamp() >= _STARTED:
            study.tell(trial.number, state=TrialState.FAIL)
    return ConfigError(
        f"the study {name} in {storage} was run with another search space ({text}). Fix: a new "
        f"hydra.sweeper.study_name for this space, or continue the study with the space it was run with."
    )


def _empty_study(exc: BaseException) -> ConfigError | None:
    """Optuna's sweeper asked for the best trial of a study that ran none: n_trials below 1."""
    if not (isinstance(exc, ValueError) and "No trials are completed" in str(exc)) or _OUTPUT is None:
        return None
    if _OUTPUT[0].is_dir() and any(p.is_dir() for p in _OUTPUT[0].iterdir()):
        return None  # jobs ran and failed: _failed_study's case
    return ConfigError(
        "the study ran no trial, so it has no best value: hydra.sweeper.n_trials must be 1 or more. "
        "Fix: e.g. hydra.sweeper.n_trials=20 (conf/hparams_search/optuna.yaml's)."
    )


def _failed_study(exc: BaseException) -> str | None:
    """Optuna's sweeper ends a study in which no trial completed with a ValueError: one line from the jobs'
    records instead (each holds its error), or None for any other exception."""
    if not (isinstance(exc, ValueError) and "No trials are completed" in str(exc)) or _OUTPUT is None:
        return None
    found = sorted(_OUTPUT[0].iterdir()) if _OUTPUT[0].is_dir() else []
    records = {p.name: read_metrics(p) or {} for p in found if (p / METRICS_FILE).is_file()}
    if not records:
        return None
    job, first = next(iter(records.items()))
    return (
        f"no trial of the study completed: {len(records)} of {len(records)} jobs failed (job {job}: "
        f"{first.get('error', first.get('status'))}); each job's metrics.json in {_OUTPUT[0]} holds its error."
    )


def console_script(main: Callable[[], Any], composes: str | None = None) -> Callable[[], None]:
    """Wrap a console script: bad input → one line, exit 2; Ctrl+C before a run saves anything → exit 130.

    With `composes`, the command line is composed first, so Hydra's own errors (an unknown option or key)
    and an unusable output directory also end in one line before Hydra starts. Hydra's errors after that (a
    sweep whose overrides do not compose, a search space Optuna refuses) end in one line too, and the sweep
    directory such a sweep made is removed while it holds nothing but Hydra's multirun.yaml.
    """

    def wrapped() -> None:
        global _OUTPUT, _STARTED
        logging.raiseExceptions = False  # a log file on a full disk: the run's one line, not a traceback per record
        _OUTPUT = None  # noted afresh by this command's OutputDirs callback
        _STARTED = time.time()
        quiet()
        full_error = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to here instead of printing them
        try:
            overrides = _hydra_overrides(sys.argv[1:]) if composes else None
            plain, given = config.hydra_flags(sys.argv[1:])
            if composes:  # cnnlab's own checks compose with the user's --config-dir too, as Hydra does
                plain = config.with_config_dir(plain, given.get("config_dir"))
            if overrides is not None:
                dirs, name = config.checked_config_dirs(given.get("config_dir")), given.get("config_name") or composes
                cfg = config.compose_config(overrides, name=name, return_hydra_config=True, config_dirs=dirs)
                try:
                    run_dir = Path(str(cfg.hydra.run.dir))
                except OmegaConfBaseException as e:  # e.g. resume=??? in the run directory's interpolation
                    raise ConfigError(
                        f"hydra.run.dir cannot be resolved ({' '.join(str(e).split())}). Fix: give the values it "
                        f"refers to (e.g. resume=null), or choose hydra.run.dir=<folder>."
                    ) from None
                check_writable(run_dir, "output directory", "choose another hydra.run.dir.")
                check_outside_runs(run_dir, "output directory", "choose another hydra.run.dir.", itself=False)
                if not (run_dir / METRICS_FILE).is_file():
                    check_own_folder(run_dir, "output directory", "choose another hydra.run.dir.")
            elif composes and (sweep_dir := _sweep_dir(sys.argv[1:], composes)) is not None:
                fix = "choose another hydra.sweep.dir (a new folder, or one outside any run)."
                check_writable(sweep_dir, "hydra.sweep.dir", fix)
                check_outside_runs(sweep_dir, "hydra.sweep.dir", fix)
                if sweep_dir.is_dir() and (
                    (sweep_dir / "multirun.yaml").exists() or any((p / ".hydra").is_dir() for p in sweep_dir.iterdir())
                ):
                    raise ConfigError(  # its jobs 0, 1, ... would be refused one by one and multirun.yaml replaced
                        f"hydra.sweep.dir {sweep_dir} already holds a sweep: a new sweep numbers its jobs from 0 "
                        f"again, into that sweep's job folders. Fix: {fix}"
                    )
                if resume := next((a for a in sys.argv[1:] if a.startswith("resume=")), None):
                    raise ConfigError(
                        f"{resume} in a multirun: a resume continues one run in its own folder, not a sweep's job. "
                        f"Fix: resume each run on its own, without -m (cnnlab-train {resume} ...)."
                    )
                if not {"config_name", "config_path"} & given.keys():  # else each job checks against its own primary
                    check_swept_values([a for a in plain if a not in ("-m", "--multirun")], composes)
            main()
        except KeyboardInterrupt:
            if _OUTPUT is not None:  # stopped before the run wrote anything: no empty folder stays behind
                remove_created(_OUTPUT[0], leftovers=("multirun.yaml",))
            sys.stderr.write("stopped by Ctrl+C.\n")
            sys.exit(130)
        except Exception as e:
            cause = user_error(e)
            if not _raised_in_job(e):  # a job's own errors were handled (or re-raised as bugs) by run_job
                cause = cause or config.startup_error(e) or _empty_study(e) or _changed_space(e, composes)
                if cause is not None and _OUTPUT is not None:
                    remove_created(_OUTPUT[0], leftovers=("multirun.yaml",))
            if cause is None and (failed := _failed_study(e)) is not None:
                sys.stderr.write(f"error: {failed}\n")
                sys.exit(1)  # a sweep whose jobs failed
            if cause is None:
                raise
            bad_input(str(cause))
        finally:
            if full_error is None:
                os.environ.pop("HYDRA_FULL_ERROR", None)
            else:
                os.environ["HYDRA_FULL_ERROR"] = full_error

    wrapped.__doc__ = main.__doc__
    return wrapped
