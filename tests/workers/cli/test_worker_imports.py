"""A worker process imports what it uses: no Alembic, Sentry SDK or console stack until something needs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

#: Heavy packages a worker without SENTRY_DSN must not load just by starting (Alembic: only to migrate).
NOT_AT_START = ("alembic", "sentry_sdk", "starlette", "jinja2", "uvicorn", "workers.console")

_PROBE = """
import json, sys
import workers.cli.main, workers.cli.worker_process, workers.fleet
print(json.dumps(sorted({name.split(".")[0] if not name.startswith("workers.") else name for name in sys.modules})))
"""


def _loaded_after_import(**env: str) -> set[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOWFLEET_") and k != "SENTRY_DSN"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout))


def test_importing_the_worker_entry_point_loads_no_alembic_sentry_or_console() -> None:
    loaded = _loaded_after_import()

    assert "dramatiq" in loaded and "workers.cli.worker_process" in loaded, "the probe imported the worker"
    assert sorted(loaded & set(NOT_AT_START)) == []
