"""peftbench: compare fine-tuning methods side by side under identical conditions.

The Python API (see peftbench.api and the README): load_config, run, report, plan. They load
on first use, so `import peftbench` stays light.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from peftbench.errors import PeftbenchError
from peftbench.logs import silence_library_loggers

__version__ = "0.1.0"
__all__ = ["PeftbenchError", "__version__", "load_config", "plan", "report", "run"]
_API = ("load_config", "run", "report", "plan")

silence_library_loggers()

if TYPE_CHECKING:
    from peftbench.api import load_config, plan, report, run


def __getattr__(name: str) -> Any:
    if name in _API:
        from peftbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'peftbench' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps peftbench.report and peftbench.plan the API functions: importing the modules of
    the same name (peftbench/report, peftbench/plan.py) would otherwise bind them over the
    functions. The modules stay importable by name (`from peftbench.report import ...`)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
