"""Files written whole or not at all: a temporary file beside the target, renamed onto it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` for the block to write.

    When the block ends, the file replaces ``path`` in one rename; if it raises, the file is
    removed and ``path`` is left as it was. The temporary name keeps ``path``'s extension (tools
    such as ffmpeg and soundfile pick the format from it) and is unique, so two processes may
    write the same target at once: the last rename wins, whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
