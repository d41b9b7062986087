"""The chaos tests' fixtures: the integration suite's real RabbitMQ, PostgreSQL, HTTP fakes and worker processes.

tests/integration/conftest.py is loaded by path (the two folders are not packages, and pytest does
not share conftest fixtures between sibling folders), and the fixtures the chaos tests use are
re-exported here, so both suites run the worker the same way and skip or fail by the same rule.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "integration" / "conftest.py"
# It imports integration_helpers by name: pytest puts its folder on sys.path only once it collects that folder,
# and tests/chaos comes first.
if str(_PATH.parent) not in sys.path:
    sys.path.insert(0, str(_PATH.parent))
_SPEC = importlib.util.spec_from_file_location("flowfleet_integration_fixtures", _PATH)
assert _SPEC is not None and _SPEC.loader is not None, f"cannot load {_PATH}"
integration = sys.modules.get(_SPEC.name)
if integration is None:
    integration = importlib.util.module_from_spec(_SPEC)
    sys.modules[_SPEC.name] = integration
    _SPEC.loader.exec_module(integration)

# Keeps each phase's report on the item, so the worker fixture prints worker logs when a test failed.
pytest_runtest_makereport = integration.pytest_runtest_makereport

services = integration.services
vhost = integration.vhost
rabbit = integration.rabbit
database = integration.database
fake_erp = integration.fake_erp
service_env = integration.service_env
worker = integration.worker
wait_for = integration.wait_for
