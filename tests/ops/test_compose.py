"""docker-compose.yml is valid Compose, runs the Procfile's processes from the project image, and its files agree.

No Docker engine runs here, so the file is validated offline against the Compose Specification's JSON
Schema, as vendored (Apache-2.0) by the check-jsonschema package (`vendor.compose-spec`).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from tests.ops.test_procfile import procfile_processes
from tests.support.observability import run_promtool
from workers.console.config import ConsoleConfig
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "ops" / "prometheus" / "prometheus.yml"
GRAFANA_DATASOURCES = ROOT / "ops" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = ROOT / "ops" / "grafana" / "provisioning" / "dashboards" / "flowfleet.yml"


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def compose() -> dict[str, Any]:
    return load(COMPOSE)


def validator() -> jsonschema.protocols.Validator:
    schema = get_builtin_schema("vendor.compose-spec")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def project_services() -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile."""
    return {name: service for name, service in compose()["services"].items() if "build" in service}


def words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> repository path, for the service's `./…` volumes."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, target, *_mode = volume.split(":")
        if source.startswith("./"):
            mounts[target] = source
    return mounts


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    errors = sorted(validator().iter_errors(compose()), key=lambda error: list(error.absolute_path))

    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_is_strict_enough_to_catch_a_misspelt_key() -> None:
    broken = compose()
    broken["services"]["worker"]["command_"] = broken["services"]["worker"].pop("command")

    assert list(validator().iter_errors(broken)), "a misspelt service key must fail validation"


def test_the_project_image_runs_exactly_the_procfile_processes_with_the_same_commands() -> None:
    services = project_services()
    processes = procfile_processes()

    assert sorted(services) == sorted(processes)
    for name, service in services.items():
        assert words(service["command"]) == shlex.split(processes[name]), name
        assert service["build"] == ".", name


def test_the_project_services_set_only_settings_that_exist() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    fields |= {f"CONSOLE_{name.upper()}" for name in ConsoleConfig.model_fields}
    for name, service in project_services().items():
        for variable in service["environment"]:
            if variable.startswith("FLOWFLEET_"):
                assert variable.removeprefix("FLOWFLEET_") in fields, f"{name}: {variable} is not a setting"
        assert {f"FLOWFLEET_{system}_URL" for system in ("ERP", "CHANNELS", "NOTIFY", "PAYMENTS")} <= set(
            service["environment"]
        ), f"{name}: the workers refuse to start without the downstream URLs"


def test_every_file_compose_mounts_exists() -> None:
    for name, service in compose()["services"].items():
        for source in bind_mounts(service).values():
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def test_prometheus_scrapes_the_workers_the_exporter_and_rabbitmq_where_compose_runs_them() -> None:
    services = compose()["services"]
    jobs = {job["job_name"]: job for job in load(PROMETHEUS)["scrape_configs"]}

    [worker_sd] = jobs["flowfleet-worker"]["dns_sd_configs"]
    assert worker_sd["names"] == ["worker"]
    assert str(worker_sd["port"]) == services["worker"]["environment"]["FLOWFLEET_METRICS_PORT"]
    exporter_port = words(services["exporter"]["command"])[-1]
    assert jobs["flowfleet-exporter"]["static_configs"] == [{"targets": [f"exporter:{exporter_port}"]}]
    assert jobs["rabbitmq"]["static_configs"] == [{"targets": ["rabbitmq:15692"]}]
    assert "rabbitmq_prometheus" in compose()["configs"]["rabbitmq-plugins"]["content"]


def test_prometheus_loads_the_alert_rules_next_to_its_config() -> None:
    mounts = bind_mounts(compose()["services"]["prometheus"])

    assert load(PROMETHEUS)["rule_files"] == ["alerts.yml"]
    assert mounts["/etc/prometheus/prometheus.yml"] == "./ops/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./ops/prometheus/alerts.yml"


def test_promtool_accepts_the_prometheus_config_and_the_rules_it_loads() -> None:
    result = run_promtool("check", "config", str(PROMETHEUS))

    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_shipped_dashboard() -> None:
    services = compose()["services"]
    mounts = bind_mounts(services["grafana"])
    [datasource] = load(GRAFANA_DATASOURCES)["datasources"]
    [provider] = load(GRAFANA_DASHBOARDS)["providers"]

    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    assert "9090:9090" in services["prometheus"]["ports"][0]
    dashboard_target = next(target for target, source in mounts.items() if source == "./ops/grafana/flowfleet.json")
    assert Path(dashboard_target).parent == Path(provider["options"]["path"])
    assert mounts["/etc/grafana/provisioning/datasources"] == "./ops/grafana/provisioning/datasources"
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./ops/grafana/provisioning/dashboards"


@pytest.mark.parametrize("service", ["rabbitmq", "postgres", "redis", "downstream", "prometheus"])
def test_what_the_workers_wait_for_has_a_healthcheck(service: str) -> None:
    assert compose()["services"][service]["healthcheck"]["test"]
