"""deploy/k8s and the Temporal Helm values, read statically: they parse, images are pinned, every TPT_*
variable is a real setting, probes hit the worker's endpoints, shutdown has time to drain, and the jobs
register our search attributes and the worker role's password."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .conftest import (
    K8S,
    ROOT,
    expected_search_attributes,
    find,
    image_is_pinned,
    parse_search_attributes,
    setting_names,
    settings_from,
)


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "Job"):
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def resolved_image(image: str) -> str:
    for entry in kustomization().get("images", []):
        if image == entry["name"]:
            return f"{entry.get('newName', image)}:{entry['newTag']}"
    return image


def worker(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return find(manifests, "Deployment", "tpt-worker")


def worker_env(manifests: list[dict[str, Any]]) -> dict[str, str]:
    """What the worker container sees: the ConfigMap it loads plus its own env (secret values as placeholders)."""
    container = worker(manifests)["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= find(manifests, "ConfigMap", source["configMapRef"]["name"])["data"]
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref and not ref.get("optional"):
            env[var["name"]] = find(manifests, "Secret", ref["name"])["stringData"][ref["key"]]
        elif "value" in var:
            env[var["name"]] = var["value"]
    return env


def test_every_manifest_parses_and_is_listed(manifests: list[dict[str, Any]]) -> None:
    for m in manifests:
        assert {"apiVersion", "kind", "metadata"} <= set(m) and m["metadata"].get("name"), m
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk, "every manifest but the secret example belongs in kustomization.yaml"
    assert "secret.example.yaml" not in listed, "secrets are created from a secret store, not applied from git"


def test_kustomize_renders() -> None:
    # kubectl ships with this project's machine image; CI must not skip this check silently.
    assert shutil.which("kubectl"), "kubectl is needed to render the manifests (it comes with the machine image)"
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(rendered.stdout))
    assert kinds == sorted(["Namespace", "ConfigMap", "Job", "Job", "Deployment", "HorizontalPodAutoscaler",
                            "PodDisruptionBudget"])


def test_every_image_is_pinned(manifests: list[dict[str, Any]], pyproject: dict[str, Any],
                               helm_values: dict[str, Any]) -> None:
    for name, spec in pod_specs(manifests):
        for c in containers(spec):
            assert image_is_pinned(resolved_image(c["image"])), f"{name}/{c['name']}: {c['image']} is not pinned"
    assert resolved_image("tpt") == f"tpt:{pyproject['project']['version']}"
    for part in ("server", "admintools", "web"):
        image = helm_values[part]["image"]
        assert image_is_pinned(f"{image['repository']}:{image['tag']}"), part


def test_tpt_variables_are_real_settings_and_load(manifests: list[dict[str, Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    known = setting_names()
    names: set[str] = set(find(manifests, "ConfigMap", "tpt-config")["data"])
    for _, spec in pod_specs(manifests):
        for c in containers(spec):
            names |= {v["name"] for v in c.get("env", [])}
    for secret in (m for m in manifests if m["kind"] == "Secret"):
        names |= set(secret.get("stringData", {}))
    unknown = {n for n in names if n.startswith("TPT_")} - known
    assert not unknown, f"{unknown} are not fields of tpt.settings.Settings (misspelt?)"
    settings_from({k: v for k, v in worker_env(manifests).items() if k.startswith("TPT_")}, monkeypatch)


def test_the_worker_gets_every_setting_it_cannot_default(manifests: list[dict[str, Any]]) -> None:
    from tpt.settings import Settings

    env = worker_env(manifests)
    required = {f"TPT_{n.upper()}" for n, f in Settings.model_fields.items() if f.is_required()}
    required |= {"TPT_DATABASE_URL", "TPT_TEMPORAL_ADDRESS", "TPT_TEMPORAL_NAMESPACE", "TPT_TASK_QUEUE"}
    assert required <= set(env), f"the worker lacks {required - set(env)}"
    assert env["TPT_DATABASE_URL"].startswith("postgresql://tpt_worker:"), "least-privilege role only"


def test_every_reference_resolves(manifests: list[dict[str, Any]]) -> None:
    for name, spec in pod_specs(manifests):
        for c in containers(spec):
            for var in c.get("env", []):
                source = var.get("valueFrom", {})
                if ref := source.get("secretKeyRef"):
                    assert ref["key"] in find(manifests, "Secret", ref["name"])["stringData"], (name, var)
                if ref := source.get("configMapKeyRef"):
                    assert ref["key"] in find(manifests, "ConfigMap", ref["name"])["data"], (name, var)
            for command in (c.get("command", []), c.get("args", [])):
                assert "$$" not in "".join(command), f"{name}: Kubernetes turns $$ into $ in command/args"


def test_probes_shutdown_and_security(manifests: list[dict[str, Any]]) -> None:
    spec = worker(manifests)["spec"]["template"]["spec"]
    container = spec["containers"][0]
    config = find(manifests, "ConfigMap", "tpt-config")["data"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == int(config["TPT_HEALTH_PORT"])
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["terminationGracePeriodSeconds"] > float(config["TPT_SHUTDOWN_GRACE_SECONDS"]) + 5
    assert container["args"] == ["worker"] and "command" not in container, "keep the image's `tpt` entrypoint"
    for name, pod in pod_specs(manifests):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        for c in containers(pod):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])


def test_autoscaling_and_disruption_budget_fit_the_deployment(manifests: list[dict[str, Any]]) -> None:
    deployment = worker(manifests)
    hpa = find(manifests, "HorizontalPodAutoscaler", "tpt-worker")
    pdb = find(manifests, "PodDisruptionBudget", "tpt-worker")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tpt-worker"}
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], \
        "with minAvailable >= replicas no node could ever be drained"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"], pdb["spec"]["selector"]):
        assert selector["matchLabels"].items() <= labels.items()


def test_the_setup_job_registers_exactly_our_search_attributes(manifests: list[dict[str, Any]]) -> None:
    job = find(manifests, "Job", "tpt-temporal-setup")["spec"]["template"]["spec"]["containers"][0]
    env = {v["name"]: v.get("value") for v in job["env"]}
    assert parse_search_attributes(env["SEARCH_ATTRIBUTES"]) == expected_search_attributes()
    script = job["args"][0]
    assert "search-attribute create" in script and '--name "$name"' in script and "$SEARCH_ATTRIBUTES" in script


def test_the_migrate_job_sets_the_worker_password_then_migrates(manifests: list[dict[str, Any]]) -> None:
    spec = find(manifests, "Job", "tpt-migrate")["spec"]["template"]["spec"]
    (role,), (migrate,) = spec["initContainers"], spec["containers"]
    assert migrate["args"] == ["db", "migrate"]
    owner = {v["name"]: v["valueFrom"]["secretKeyRef"]["name"] for v in migrate["env"] if "valueFrom" in v}
    assert owner == {"TPT_DATABASE_URL": "tpt-owner-db"}, "migrations run as the schema owner"
    assert inline_sql(role["args"][0]) == sql_statements((ROOT / "deploy/audit/worker-role.sql").read_text())


def inline_sql(script: str) -> str:
    match = re.search(r"<<'SQL'\n(.*?)\nSQL\b", script, re.S)
    assert match, "the worker-role container feeds psql a quoted heredoc"
    return sql_statements(match.group(1))


def sql_statements(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("--"))


def test_helm_values_use_postgres_and_the_compose_versions(helm_values: dict[str, Any],
                                                           compose: dict[str, Any]) -> None:
    stores = helm_values["server"]["config"]["persistence"]["datastores"]
    for store in ("default", "visibility"):
        sql = stores[store]["sql"]
        assert sql["pluginName"] == "postgres12" and sql["manageSchema"] is True, store
        assert "password" not in sql and sql["existingSecret"], f"{store}: the password comes from a Secret"
    images = {s["image"].rpartition(":")[0]: s["image"].rpartition(":")[2] for s in compose["services"].values()}
    for part in ("server", "admintools", "web"):
        image = helm_values[part]["image"]
        assert str(image["tag"]) == images[image["repository"]], f"{part}: Helm and compose run different versions"
    namespaces = helm_values["server"]["config"]["namespaces"]
    assert namespaces["create"] and [n["name"] for n in namespaces["namespace"]] == ["tpt"]


def test_helm_and_compose_enable_the_same_temporal_features(helm_values: dict[str, Any]) -> None:
    compose_config = yaml.safe_load((ROOT / "deploy/temporal/dynamicconfig.yaml").read_text())
    dev_only = {"system.forceSearchAttributesCacheRefreshOnRead"}
    assert set(helm_values["server"]["dynamicConfig"]) == set(compose_config) - dev_only
    for key, values in helm_values["server"]["dynamicConfig"].items():
        assert values == compose_config[key], key
