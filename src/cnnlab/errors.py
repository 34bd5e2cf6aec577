"""User-facing errors: each message names the bad value, the valid choices and the fix."""

import errno
import io
import os
import threading

# A full disk, an exhausted quota, a file system mounted read-only.
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class CnnlabError(Exception):
    """An error caused by the user's input; printed as one clear message, never a traceback."""


class ConfigError(CnnlabError):
    """A configuration value is invalid."""


class DataError(CnnlabError):
    """The dataset is missing or damaged."""


class RunInterrupted(Exception):
    """Raised after SIGINT/SIGTERM/SIGUSR2 once the current batch is done and a checkpoint is saved."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def check_choice(name: str, value: object, choices: "list[str] | tuple[str, ...]") -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(
            f"{name}={value!r} is not a valid choice. Valid: {', '.join(map(str, choices))}. "
            f"Fix: pass e.g. {name}={choices[0]}."
        )


def written_file(exc: OSError) -> str | None:
    """The file a failed write was writing: `exc.filename`, else the name of the file object open in the innermost
    frame (a failed write() names no file; a thread's error re-raised elsewhere keeps its frames)."""
    if exc.filename:
        return str(exc.filename)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    for value in tb.tb_frame.f_locals.values() if tb is not None else ():
        if isinstance(value, io.IOBase) and isinstance(name := getattr(value, "name", None), (str, bytes)):
            return os.fsdecode(name)  # an int name is a descriptor (os.fdopen's): no file name
    return None


def user_error(exc: BaseException) -> CnnlabError | None:
    """The CnnlabError behind `exc` (Hydra's instantiate wraps errors raised by constructors), or None: a bug.

    The config's own faults that Hydra's instantiate raises (a `_target_` that does not import, arguments that do
    not fit it, a `???` never set) become one ConfigError (`cnnlab.config.instantiation_error`); an error raised
    inside a constructor's code stays a bug."""
    chain = []
    while exc is not None:
        if isinstance(exc, CnnlabError):
            return _own_words(exc)
        if isinstance(exc, OSError) and exc.errno in (*_DISK_ERRNOS, errno.EFBIG):  # the machine's state: one line
            name = written_file(exc)
            if exc.errno == errno.EFBIG:
                return CnnlabError(_too_large(name))
            where = f" writing {name}" if name else ""
            return CnnlabError(
                f"the disk refused a write{where} ({exc.strerror}). Fix: free space there (or make it writable), "
                f"or choose hydra.run.dir (or --out) on another disk."
            )
        if type(exc).__name__ in ("InterpolationKeyError", "InterpolationToMissingValueError") and type(
            exc
        ).__module__.startswith("omegaconf"):  # a config's ${...} to a key that is not there (or is ???)
            key = getattr(exc, "full_key", None)
            return ConfigError(
                f"{f'{key}: ' if key else ''}{str(exc).splitlines()[0]} (a ${{...}} in a config or an override "
                f"points at it). Fix: point the interpolation at a key the config has (cnnlab-train --cfg job lists "
                f"them){f', or give {key} a value' if key else ''}."
            )
        chain.append(exc)
        exc = exc.__cause__
    from cnnlab.config import instantiation_error  # here: cnnlab.config imports this module

    return next((error for error in map(instantiation_error, chain) if error is not None), None)


def _own_words(error: CnnlabError) -> CnnlabError:
    """`error` with its own message: raised in a DataLoader worker, it comes back to the main process as a new
    error of its type whose message is the worker's traceback ("Caught DataError in DataLoader worker process 0.
    Original Traceback ..."), which ends in the line "cnnlab.errors.DataError: <message>"."""
    text = str(error)
    if not text.startswith("Caught ") or "\nOriginal Traceback" not in text:
        return error
    last = text.rstrip().splitlines()[-1]
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    return type(error)(last.removeprefix(prefix)) if last.startswith(prefix) else error


def _too_large(name: str | None) -> str:
    """The message for EFBIG: past this process's file size limit (`ulimit -f`; Python ignores SIGXFSZ, so write()
    raises EFBIG instead of the process being killed), or past the largest file the file system takes (FAT32)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        limit = None
    if limit is None or limit == resource.RLIM_INFINITY:
        return (
            f"{name or 'a file'} grew past the largest file its file system takes (File too large). Fix: choose "
            f"hydra.run.dir (or --out) on another file system."
        )
    blocks = f" {limit // 1024}" if limit % 1024 == 0 else ""  # bash's ulimit -f counts 1024-byte blocks
    return (
        f"{name or 'a file'} reached this process's file size limit (ulimit -f{blocks}: {limit} bytes). Fix: raise the "
        f"limit (ulimit -f unlimited) in the shell or job script that starts the command."
    )


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """Threads that hand their error to their owner (TensorBoard's event writer keeps it as `thread.exception` and
    raises it at the owner's next write) die quietly of a full disk or a file size limit: the owner's run ends in
    one line for it, where the default hook printed the thread's traceback (40 lines) first."""
    error = args.exc_value
    if not (
        isinstance(error, OSError)
        and error.errno in (*_DISK_ERRNOS, errno.EFBIG)
        and getattr(args.thread, "exception", None) is error
    ):
        _thread_hook_before(args)


def quiet_disk_errors_in_threads() -> None:
    """Install `_thread_excepthook` in front of the current threading.excepthook, once (cnnlab.runs.quiet calls it)."""
    global _thread_hook_before
    if not getattr(threading.excepthook, "_cnnlab", False):
        _thread_hook_before = threading.excepthook
        _thread_excepthook._cnnlab = True
        threading.excepthook = _thread_excepthook


_thread_hook_before = threading.excepthook
