"""docker-compose.yml, read statically (no Docker engine here): pinned images, settings spelled as the code
reads them, secrets from .env only, healthchecks, start order, a scalable worker, the search attributes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from .conftest import (
    ROOT,
    expected_search_attributes,
    image_is_pinned,
    interpolate,
    parse_search_attributes,
    setting_names,
    settings_from,
    variables,
)

ONE_SHOT = {"temporal-schema", "temporal-setup", "audit-roles", "migrate"}
LONG_RUNNING = {"temporal-db", "temporal", "ui", "audit-db", "worker"}
TPT_SERVICES = {"migrate", "worker", "demo"}


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on must name a condition for every dependency"
    return {name: spec["condition"] for name, spec in deps.items()}


def upstream(compose: dict[str, Any], name: str) -> set[str]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in depends(services(compose)[todo.pop()]):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_stack_has_every_part(compose: dict[str, Any]) -> None:
    assert ONE_SHOT | LONG_RUNNING <= set(services(compose))
    for name in ONE_SHOT:
        assert services(compose)[name].get("restart") == "no", f"{name} is a one-shot job: it must not restart"
    for name in LONG_RUNNING:
        assert services(compose)[name].get("restart") == "unless-stopped", name


def test_every_image_is_pinned(compose: dict[str, Any], pyproject: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        image = service.get("image")
        assert image, f"{name} has no image"
        assert image_is_pinned(image), f"{name}: {image} is not pinned to an explicit version tag"
    for name in TPT_SERVICES:
        assert services(compose)[name]["image"] == f"tpt:{pyproject['project']['version']}", name
        assert services(compose)[name]["build"]["context"] == "."


def test_the_audit_database_is_separate_from_temporals(compose: dict[str, Any],
                                                       dotenv_example: dict[str, str]) -> None:
    svc = services(compose)
    assert svc["temporal"]["environment"]["POSTGRES_SEEDS"] == "temporal-db"
    assert svc["audit-db"]["image"].startswith("postgres:") and svc["temporal-db"]["image"].startswith("postgres:")
    for name in ("worker", "migrate"):
        url = urlsplit(interpolate(svc[name]["environment"]["TPT_DATABASE_URL"], dotenv_example))
        assert url.hostname == "audit-db", f"{name} must use the audit database, not Temporal's"
    volumes = {v.split(":")[0] for s in ("audit-db", "temporal-db") for v in svc[s]["volumes"]}
    assert volumes == {"audit-db-data", "temporal-db-data"}


def test_the_worker_connects_with_the_least_privilege_role_only(compose: dict[str, Any],
                                                                 dotenv_example: dict[str, str]) -> None:
    svc = services(compose)
    worker_env = svc["worker"]["environment"]
    worker_url = urlsplit(interpolate(worker_env["TPT_DATABASE_URL"], dotenv_example))
    assert worker_url.username == "tpt_worker"
    assert "TPT_WORKER_DATABASE_URL" not in worker_env or "tpt_worker" in worker_env["TPT_WORKER_DATABASE_URL"]
    owner_vars = variables(svc["audit-db"]["environment"]["POSTGRES_PASSWORD"])
    assert not owner_vars & set().union(*(variables(str(v)) for v in worker_env.values())), \
        "a worker must never get the owner's password"
    owner = svc["audit-db"]["environment"]["POSTGRES_USER"]
    assert urlsplit(interpolate(svc["migrate"]["environment"]["TPT_DATABASE_URL"], dotenv_example)).username == owner
    # the role's password is set from .env by the audit-roles job, with the same variable the worker uses
    assert variables(svc["audit-roles"]["environment"]["WORKER_PASSWORD"]) == variables(worker_env["TPT_DATABASE_URL"])
    assert any("deploy/audit/worker-role.sql" in v for v in svc["audit-roles"]["volumes"])


def test_tpt_variables_are_real_settings_and_load(compose: dict[str, Any], dotenv_example: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    known = setting_names()
    for name, service in services(compose).items():
        env = {k: interpolate(str(v), dotenv_example) for k, v in service.get("environment", {}).items()}
        unknown = {k for k in env if k.startswith("TPT_")} - known
        assert not unknown, f"{name} sets {unknown}: not fields of tpt.settings.Settings (misspelt?)"
        if name in TPT_SERVICES:
            settings_from({k: v for k, v in env.items() if k.startswith("TPT_")}, monkeypatch)  # validates


def test_the_worker_gets_every_setting_it_cannot_default(compose: dict[str, Any],
                                                         dotenv_example: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tpt.settings import Settings

    env = {k: interpolate(str(v), dotenv_example) for k, v in services(compose)["worker"]["environment"].items()}
    required = {f"TPT_{n.upper()}" for n, f in Settings.model_fields.items() if f.is_required()}
    # `tpt worker` refuses to start without TPT_DATABASE_URL; 127.0.0.1 is wrong inside a container.
    required |= {"TPT_DATABASE_URL", "TPT_TEMPORAL_ADDRESS", "TPT_TEMPORAL_NAMESPACE", "TPT_TASK_QUEUE"}
    assert required <= set(env), f"worker lacks {required - set(env)}"
    settings = settings_from({k: v for k, v in env.items() if k.startswith("TPT_")}, monkeypatch)
    svc = services(compose)
    assert settings.temporal_address == svc["temporal-setup"]["environment"]["TEMPORAL_ADDRESS"]
    assert settings.temporal_namespace == svc["temporal-setup"]["environment"]["NAMESPACE"]
    assert settings.temporal_namespace == svc["ui"]["environment"]["TEMPORAL_DEFAULT_NAMESPACE"]
    demo = svc["demo"]["environment"]
    assert (demo["TPT_TEMPORAL_NAMESPACE"], demo["TPT_TASK_QUEUE"]) == (settings.temporal_namespace,
                                                                        settings.task_queue)


def test_secrets_come_from_dotenv_only(compose: dict[str, Any], dotenv_example: dict[str, str]) -> None:
    secret_keys = {"POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_PASSWORD", "PGPASSWORD", "WORKER_PASSWORD"}
    used: set[str] = set()
    for name, service in services(compose).items():
        for key, value in service.get("environment", {}).items():
            used |= variables(str(value))
            if key in secret_keys:
                assert variables(str(value)), f"{name}.{key} is hard-coded; take it from .env"
                assert ":?" in str(value), f"{name}.{key} must be required (${{VAR:?…}}), not defaulted"
            if key == "TPT_DATABASE_URL":
                assert variables(str(value)), f"{name}.{key} carries a hard-coded password"
    assert used <= set(dotenv_example), f".env.example lacks {used - set(dotenv_example)}"


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = services(compose)[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    worker_check = services(compose)["worker"]["healthcheck"]["test"]
    assert worker_check[-3:] == ["-m", "workers.health", "readyz"]  # the probe reads TPT_HEALTH_PORT itself


def test_depends_on_conditions_give_the_start_order(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for dep, condition in depends(service).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert condition == expected, f"{name} → {dep}: {condition}, expected {expected}"
    order = {
        "temporal-schema": {"temporal-db"},
        "temporal": {"temporal-schema", "temporal-db"},
        "temporal-setup": {"temporal"},
        "ui": {"temporal", "temporal-setup"},
        "audit-roles": {"audit-db"},
        "migrate": {"audit-roles", "audit-db"},
        "worker": {"migrate", "temporal-setup", "temporal", "audit-db"},
        "demo": {"worker"},
    }
    for name, before in order.items():
        assert before <= upstream(compose, name), f"{name} may start before {before - upstream(compose, name)}"
        assert name not in upstream(compose, name), f"{name} depends on itself"


def test_the_worker_scales(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale needs no fixed name or host port"
    grace = float(worker["environment"]["TPT_SHUTDOWN_GRACE_SECONDS"])
    assert float(worker["stop_grace_period"].removesuffix("s")) > grace, "SIGKILL would cut the drain short"
    assert worker["command"] == ["worker"] and "entrypoint" not in worker


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name} mounts {source}, which does not exist"


def test_the_setup_job_registers_exactly_our_search_attributes(compose: dict[str, Any]) -> None:
    setup = services(compose)["temporal-setup"]
    assert parse_search_attributes(setup["environment"]["SEARCH_ATTRIBUTES"]) == expected_search_attributes()
    script = (ROOT / "deploy" / "temporal" / "setup-namespace.sh").read_text()
    assert 'search-attribute create --namespace "$NAMESPACE" --name "$1" --type "$2"' in script
    assert 'for pair in $SEARCH_ATTRIBUTES' in script
    assert setup["entrypoint"] == ["sh", "/deploy/setup-namespace.sh"]


def test_temporal_uses_postgres_and_our_dynamic_config(compose: dict[str, Any]) -> None:
    temporal = services(compose)["temporal"]
    env = temporal["environment"]
    assert env["DB"] == "postgres12"
    mount = next(v for v in temporal["volumes"] if "dynamicconfig.yaml" in v)
    source, target = mount.split(":")[:2]
    assert target == env["DYNAMIC_CONFIG_FILE_PATH"]
    config = yaml.safe_load((ROOT / source).read_text())
    for key, values in config.items():
        assert isinstance(values, list) and all("value" in v for v in values), f"malformed dynamic config {key}"
    assert services(compose)["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert temporal["image"].rpartition(":")[2] == services(compose)["temporal-schema"]["image"].rpartition(":")[2]


def test_our_search_attributes_fit_postgres_visibility() -> None:
    """SQL visibility pre-allocates columns per namespace: 10 Keyword and 3 of every other type."""
    from collections import Counter

    slots = Counter(expected_search_attributes().values())
    for kind, used in slots.items():
        assert used <= (10 if kind == "Keyword" else 3), f"{used} {kind} attributes: Postgres visibility has fewer"


def test_payloads_are_encrypted_with_one_keyring_and_the_ui_decrypts_through_the_codec_server(
        compose: dict[str, Any], dotenv_example: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    everyone = services(compose)
    holders = {name for name, s in everyone.items() if "TPT_CODEC_KEYS" in (s.get("environment") or {})}
    assert holders == {"worker", "demo", "codec-server"}, "every payload reader and writer holds the keyring"
    assert {everyone[n]["environment"]["TPT_CODEC_KEYS"] for n in holders} == {
        "${TPT_CODEC_KEYS:?set it in .env (tpt codec keygen)}"}
    codec = everyone["codec-server"]
    assert codec["command"] == ["codec-server"] and "healthcheck" in codec
    settings = settings_from({k: interpolate(str(v), dotenv_example) for k, v in codec["environment"].items()},
                             monkeypatch)
    assert settings.codec_token is not None, "beyond loopback the codec server refuses to start without a token"
    host_ports = {int(p.split(":")[1]) for p in codec["ports"]}  # "127.0.0.1:HOST:CONTAINER"
    ui = everyone["ui"]["environment"]
    assert all(p.startswith("127.0.0.1:") for p in codec["ports"]), "the codec server is published on loopback"
    assert host_ports == {settings.codec_port} == {urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"]).port}
    assert ui["TEMPORAL_CORS_ORIGINS"] in settings.codec_origins
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true", "the browser must send the codec session cookie"
