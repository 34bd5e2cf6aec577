"""User-facing errors: each message names the bad value, the valid choices and the fix."""


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
    """The CnnlabError behind `exc` (Hydra's instantiate wraps errors raised by constructors), or None."""
    while exc is not None:
        if isinstance(exc, CnnlabError):
            return exc
        exc = exc.__cause__
    return None
