"""The chaos tests' fixtures: the integration suite's real RabbitMQ, PostgreSQL, HTTP fakes and worker processes.

pytest does not share conftest fixtures between sibling folders, so the fixtures the chaos tests use are
imported from tests.integration.conftest by module path and re-exported here: both suites run the worker
the same way and skip or fail by the same rule.
"""

from __future__ import annotations

from tests.integration import conftest as integration

# Keeps each phase's report on the item, so the worker fixture prints worker logs when a test failed.
pytest_runtest_makereport = integration.pytest_runtest_makereport

services = integration.services
vhost = integration.vhost
rabbit = integration.rabbit
database = integration.database
fake_erp = integration.fake_erp
service_env = integration.service_env
worker = integration.worker
flowfleet = integration.flowfleet
wait_for = integration.wait_for
