"""A child of `flowfleet worker --processes` stops as on SIGTERM once its parent is gone, however the parent died.

The parent forwards SIGTERM and SIGINT to its children, but a parent killed outright (`kill -9`, the OOM
killer) forwards nothing, and its children would run on unsupervised: nobody restarts them, and a later
`flowfleet worker` would start a second set beside them. Each child watches its parent's pid instead.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

#: Set by the supervisor in each child's environment: the pid the child must outlive no longer than.
PARENT_ENV = "FLOWFLEET_SUPERVISOR_PID"
#: How often a child looks at its parent.
CHECK_SECONDS = 1.0


def watch_parent(logger: logging.Logger) -> None:
    """When started by a supervisor, SIGTERM this process (a drain, as a forwarded signal is) once it is gone."""
    named = os.environ.get(PARENT_ENV, "")
    if not named.isdigit():
        return
    parent = int(named)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(CHECK_SECONDS)
        logger.warning("the supervising parent (pid %d) is gone; stopping as on SIGTERM", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="flowfleet-parent-watch", daemon=True).start()
