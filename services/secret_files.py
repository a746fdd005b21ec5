"""A secret kept in a file of its own (a signing key, an nkey seed), made once and never half-written.

Two processes starting together (`dealflow up` and the `serve` it starts, say) must agree on one
secret: the file is written whole under a temporary name and linked into place only if no file is
there yet, so every reader sees the one winner, complete. Mode 0600: the owner alone reads it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_once(path: Path, content: bytes) -> None:
    """Put `content` at `path` (mode 0600) unless a file is there already; either way, one whole file stands."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process's stands: use theirs
            os.link(scratch, path)
    finally:
        os.unlink(scratch)
