"""workers.cli.parent_watch: a supervised child gets SIGTERM once its parent is killed outright, and only then."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: The child: watches the pid named in its environment, and notes the SIGTERM it then gets.
CHILD = """
import logging, signal, sys, time
from pathlib import Path
from workers.cli.parent_watch import watch_parent
note = Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (note.write_text("SIGTERM"), sys.exit(0)))
watch_parent(logging.getLogger("test"))
note.write_text("watching")
time.sleep(30)
"""

#: The parent: starts the child with its own pid in PARENT_ENV, prints the child's pid, then waits to be killed.
PARENT = """
import os, subprocess, sys, time
from workers.cli.parent_watch import PARENT_ENV
env = {**os.environ, PARENT_ENV: str(os.getpid())}
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=env)
print(child.pid, flush=True)
time.sleep(30)
"""


def _wait_for(note: Path, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if note.exists() and note.read_text() == text:
            return True
        time.sleep(0.05)
    return False


def test_a_child_whose_parent_is_killed_gets_sigterm_and_not_before(tmp_path: Path) -> None:
    note = tmp_path / "note"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, str(note)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        assert _wait_for(note, "watching"), "the child started watching"
        time.sleep(1.5)  # more than one check: a live parent sends nothing
        assert note.read_text() == "watching"

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)

        assert _wait_for(note, "SIGTERM"), "the child was told to stop once its parent was gone"
    finally:
        for pid in (child_pid, parent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait(timeout=10)
