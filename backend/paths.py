"""Where tunebridge keeps files it builds at run time (converted models, by default runs).

One place, so tests can isolate everything with a single environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Folder for converted base models: `TUNEBRIDGE_CACHE_DIR`, else `~/.cache/tunebridge`."""
    explicit = os.environ.get("TUNEBRIDGE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tunebridge"


def log_file() -> Path:
    """The CLI's log of third-party notes that are not for the screen (pypdf's, ...): in cache_dir()."""
    return cache_dir() / "logs" / "tunebridge.log"
