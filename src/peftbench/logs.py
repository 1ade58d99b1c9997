"""What peftbench says while it works: one `logging` logger, levels set by -q / -v.

Progress and results go to stdout through the "peftbench" logger (INFO), problems to stderr
(WARNING and up), so `peftbench run ... > log` keeps a readable log. The level travels to each
run's process in PEFTBENCH_LOG_LEVEL. Known noise of the libraries underneath (messages that
ask nothing of the user) is silenced here, in one place.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

LOG = logging.getLogger("peftbench")
LEVEL_ENV = "PEFTBENCH_LOG_LEVEL"

# Library loggers whose messages at WARNING and below are noise for a peftbench user.
NOISY_LOGGERS = (
    # Every import of bitsandbytes on an AVX-512 BF16 CPU: "Failed to load CPU
    # gemm_4bit_forward from kernels-community ... pip install kernels" (an optional speed-up).
    "bitsandbytes.backends.cpu.ops",
    # The SQLite store's schema migrations, printed when MLflow creates its database.
    "alembic",
    "alembic.runtime.migration",
    "mlflow.store.db.utils",
    # "TensorFlow installation not found - running with reduced feature set."
    "tensorboard",
)


class _CurrentStream(logging.StreamHandler):
    """Writes to whatever sys.stdout / sys.stderr is at the time (pytest and notebooks swap it)."""

    def __init__(self, error: bool) -> None:
        super().__init__()
        self._error = error

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr if self._error else sys.stdout

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ assigns it
        pass


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def level_for(verbosity: int) -> int:
    """-q (-1): warnings only; default (0): progress; -v (1 or more): debug detail too."""
    if verbosity < 0:
        return logging.WARNING
    return logging.DEBUG if verbosity > 0 else logging.INFO


def configure(level: int | None = None) -> None:
    """Send the peftbench logger to stdout (below WARNING) and stderr; set its level.

    Without a level, the one in PEFTBENCH_LOG_LEVEL (set by the CLI for the run processes),
    else INFO. Safe to call more than once."""
    if level is None:
        level = int(os.environ.get(LEVEL_ENV, logging.INFO))
    os.environ[LEVEL_ENV] = str(level)
    LOG.setLevel(level)
    LOG.disabled = False  # logging.config.fileConfig (alembic's, for one) disables loggers
    LOG.propagate = False
    for handler in list(LOG.handlers):
        if isinstance(handler, _CurrentStream):
            LOG.removeHandler(handler)
    out = _CurrentStream(error=False)
    out.addFilter(_Below(logging.WARNING))
    err = _CurrentStream(error=True)
    err.setLevel(logging.WARNING)
    err.setFormatter(_Prefixed())
    LOG.addHandler(out)
    LOG.addHandler(err)
    silence_known_noise()


def is_configured() -> bool:
    return any(isinstance(handler, _CurrentStream) for handler in LOG.handlers)


class _Prefixed(logging.Formatter):
    """ "peftbench: warning: ..." on stderr, as the CLI's errors read."""

    def format(self, record: logging.LogRecord) -> str:
        return f"peftbench: {record.levelname.lower()}: {record.getMessage()}"


def silence_library_loggers() -> None:
    """Raise the noisy library loggers to ERROR (done on `import peftbench`, so that it is in
    place before peft imports bitsandbytes, in every process)."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def silence_known_noise() -> None:
    """Quiet the library messages that ask nothing of the user, before those libraries load.

    The environment variables reach the run processes too."""
    silence_library_loggers()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
