"""User-facing errors: each message names the bad value, the valid choices and the fix."""

import errno

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


def user_error(exc: BaseException) -> CnnlabError | None:
    """The CnnlabError behind `exc` (Hydra's instantiate wraps errors raised by constructors), or None: a bug.

    The config's own faults that Hydra's instantiate raises (a `_target_` that does not import, arguments that do
    not fit it, a `???` never set) become one ConfigError (`cnnlab.config.instantiation_error`); an error raised
    inside a constructor's code stays a bug."""
    chain = []
    while exc is not None:
        if isinstance(exc, CnnlabError):
            return exc
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:  # the machine's state, not a bug: one line
            where = f" writing {exc.filename}" if exc.filename else ""
            return CnnlabError(
                f"the disk refused a write{where} ({exc.strerror}). Fix: free space there (or make it writable), "
                f"or choose hydra.run.dir on another disk."
            )
        chain.append(exc)
        exc = exc.__cause__
    from cnnlab.config import instantiation_error  # here: cnnlab.config imports this module

    return next((error for error in map(instantiation_error, chain) if error is not None), None)
