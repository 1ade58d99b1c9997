"""No machine paths in what a report writes: paths as the user wrote them or relative.

A relative path is kept as written. An absolute path under the report's output directory is
shown relative to it, one under the working directory relative to that (as the user would
have typed it there); any other absolute path is cut to its last two parts ("…/data/imdb"),
which names it without naming the machine.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# An absolute path of two or more parts, not part of a word, a URL or a fraction like tokens/s.
ABSOLUTE = re.compile(r"(?<![\w.:/~…-])(?:~|/)(?:[\w.@+-]+/)+[\w.@+-]*")


def shown_path(path: str | Path, out_dir: Path) -> str:
    """How a report names `path`: as written when relative, else relative or shortened."""
    text = str(path)
    if not os.path.isabs(os.path.expanduser(text)):
        return Path(text).as_posix()
    target = Path(os.path.expanduser(text)).resolve()
    for base in (Path(out_dir).resolve(), Path.cwd().resolve()):
        if target == base or base in target.parents:
            return target.relative_to(base).as_posix() or "."
    return "…/" + "/".join(target.parts[-2:])


def scrub(text: str, out_dir: Path) -> str:
    """The text with every absolute path in it replaced by `shown_path`."""
    return ABSOLUTE.sub(lambda match: shown_path(match.group(0), out_dir), text)
