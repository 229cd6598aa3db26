"""Named points inside crash-sensitive writes, where a test can hold the process to kill it there.

With `TUNEBRIDGE_CRASH_POINT=<name>` and `TUNEBRIDGE_CRASH_DIR=<folder>` set, a process that reaches
the point named creates `<folder>/<name>.reached` and waits until it is killed: a kill -9 then lands
exactly inside the window under test. Unset (as everywhere outside such tests), a point is a no-op.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def reach(name: str) -> None:
    if os.environ.get("TUNEBRIDGE_CRASH_POINT") != name:
        return
    folder = Path(os.environ.get("TUNEBRIDGE_CRASH_DIR") or ".")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.reached").write_text(str(os.getpid()))
    while True:  # held here until the test kills the process
        time.sleep(3600)
