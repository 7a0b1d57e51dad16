"""``tailguard k8s render``: golden files, offline validation, determinism, typos caught.

Regenerate the golden files after an intended change with
``TAILGUARD_UPDATE_GOLDEN=1 pytest tests/unit/test_k8s_render.py`` and review the diff.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailguard.k8s import K8sSpec, render_job, render_serve, write_manifests
from tailguard.k8s.render import dump
from tailguard.k8s.validate import ManifestInvalid, validate_object
from tailguard.serve.config import ServeConfig
from tailguard.serve.live_apply import read_config_file
from tailguard.train.job import parse_job

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "k8s"
SERVE = ROOT / "examples" / "k8s" / "serve.yaml"
JOB = ROOT / "examples" / "digits" / "job.yaml"


def serve_objects(**spec: Any) -> list[dict[str, Any]]:
    _, config = read_config_file(SERVE)
    return render_serve(config, K8sSpec(**spec))


def job_objects() -> list[dict[str, Any]]:
    raw = yaml.safe_load(JOB.read_text())
    return render_job(parse_job(raw), raw, K8sSpec())


def check_golden(objects: list[dict[str, Any]], name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    write_manifests(objects, out)
    golden = GOLDEN / name
    if os.environ.get("TAILGUARD_UPDATE_GOLDEN"):
        write_manifests(objects, golden)
    got = {p.name: p.read_text() for p in sorted(out.iterdir())}
    want = {p.name: p.read_text() for p in sorted(golden.iterdir())}
    assert list(got) == list(want)
    for file, text in got.items():
        assert text == want[file], f"{file} differs from {golden / file}"


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objects]


@pytest.mark.parametrize("autoscaler", ["keda", "hpa"])
def test_two_tenants_two_models_match_golden_and_validate(autoscaler: str,
                                                          tmp_path: Path) -> None:
    objects = serve_objects(autoscaler=autoscaler)
    check_golden(objects, f"serve-{autoscaler}", tmp_path)
    for obj in objects:
        validate_object(obj)
    scalers = [k for k in kinds(objects) if k in ("ScaledObject", "HorizontalPodAutoscaler")]
    assert scalers == (["ScaledObject"] if autoscaler == "keda"
                       else ["HorizontalPodAutoscaler"])  # never both on the gateway
    assert kinds(objects).count("Namespace") == 3  # the gateway's and one per tenant
    for kind in ("ResourceQuota", "LimitRange", "ServiceAccount"):
        assert kinds(objects).count(kind) >= 2


def test_keda_scales_on_each_p99_as_a_value(tmp_path: Path) -> None:
    (scaled,) = [o for o in serve_objects() if o["kind"] == "ScaledObject"]
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["threshold"] for t in triggers] == ["0.1", "0.02"]
    assert {t["metricType"] for t in triggers} == {"Value"}  # not AverageValue: a quantile
    assert 'deployment="minilm"' in triggers[0]["metadata"]["query"]


def test_config_map_holds_only_key_digests() -> None:
    (cm,) = [o for o in serve_objects() if o["kind"] == "ConfigMap"
             and o["metadata"]["name"] == "tailguard-gateway-config"]
    text = cm["data"]["serve.yaml"]
    assert "sk-search-example" not in text and "sk-admin-example" not in text
    assert text.count("sha256:") == 3
    served = yaml.safe_load(text)
    assert (served["host"], served["port"]) == ("0.0.0.0", 8000)
    _, config = read_config_file(SERVE)
    # what the pod serves is the file's config, bound to the pod's port
    assert ServeConfig.model_validate(served) == config.model_copy(
        update={"host": "0.0.0.0", "port": 8000})


def test_gateway_probes_use_the_v2_health_routes() -> None:
    (dep,) = [o for o in serve_objects() if o["kind"] == "Deployment"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # two MiniLM replicas at one thread and one echo replica, plus the gateway's own core
    assert container["resources"]["requests"]["cpu"] == "4000m"


def test_rayjob_matches_golden_and_validates(tmp_path: Path) -> None:
    objects = job_objects()
    check_golden(objects, "rayjob-digits", tmp_path)
    for obj in objects:
        validate_object(obj)
    (job,) = [o for o in objects if o["kind"] == "RayJob"]
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == 2  # world_size


def test_ray_backend_renders_a_raycluster_the_gateway_points_at() -> None:
    _, config = read_config_file(SERVE)
    config = config.model_copy(update={"backend": "ray"})
    objects = render_serve(config, K8sSpec())
    for obj in objects:
        validate_object(obj)
    (cluster,) = [o for o in objects if o["kind"] == "RayCluster"]
    assert [g["groupName"] for g in cluster["spec"]["workerGroupSpecs"]] == ["minilm", "echo"]
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"
             and o["metadata"]["name"] == "tailguard-gateway-config"]
    assert yaml.safe_load(cm["data"]["serve.yaml"])["ray_address"] == (
        "ray://tailguard-ray-head-svc.tailguard.svc:10001")


def test_shared_namespace_isolates_tenants_by_label() -> None:
    objects = serve_objects(tenant_namespaces="shared")
    for obj in objects:
        validate_object(obj)
    assert kinds(objects).count("Namespace") == 1
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"
                and "tailguard.io/tenant" in o["metadata"]["labels"]]
    assert [p["spec"]["podSelector"] for p in policies] == [
        {"matchLabels": {"tailguard.io/tenant": "search"}},
        {"matchLabels": {"tailguard.io/tenant": "batch"}}]


def test_rendering_is_deterministic_and_a_rerender_touches_nothing(tmp_path: Path) -> None:
    first = [dump(o) for o in serve_objects()]
    assert first == [dump(o) for o in serve_objects()]
    paths = write_manifests(serve_objects(), tmp_path)
    stamps = [p.stat().st_mtime_ns for p in paths]
    (tmp_path / "notes.yaml").write_text("mine\n")
    assert write_manifests(serve_objects(), tmp_path) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    fewer = write_manifests(serve_objects(autoscaler="none"), tmp_path)  # stale files go
    assert sorted(tmp_path.iterdir()) == sorted([*fewer, tmp_path / "notes.yaml"])


def test_keda_needs_an_objective() -> None:
    _, config = read_config_file(SERVE)
    plain = [d.model_copy(update={"p99_ms": None}) for d in config.deployments]
    with pytest.raises(ValueError, match="give a deployment p99_ms"):
        render_serve(config.model_copy(update={"deployments": plain}), K8sSpec())


def _mutated(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(o for o in objects if o["kind"] == kind))


def test_typos_are_caught() -> None:
    objects = serve_objects()
    dep = _mutated(objects, "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(ManifestInvalid, match="readinesProbe"):
        validate_object(dep)
    scaled = _mutated(objects, "ScaledObject")
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(ManifestInvalid, match="maxReplicas"):
        validate_object(scaled)
    scaled = _mutated(objects, "ScaledObject")
    scaled["spec"]["triggers"][0]["metric_type"] = "Value"
    with pytest.raises(ManifestInvalid, match="metric_type"):
        validate_object(scaled)
    job = _mutated(job_objects(), "RayJob")
    job["spec"]["rayClusterSpec"]["workerGroupSpec"] = job["spec"]["rayClusterSpec"].pop(
        "workerGroupSpecs")
    with pytest.raises(ManifestInvalid, match="workerGroupSpec"):
        validate_object(job)


def test_int_or_string_fields_take_both() -> None:
    job = _mutated(job_objects(), "RayJob")
    container = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"][0]
    for cpu in (1, "1", "500m"):
        container["resources"]["limits"]["cpu"] = cpu
        validate_object(job)
    container["resources"]["limits"]["cpu"] = [1]
    with pytest.raises(ManifestInvalid, match="cpu"):
        validate_object(job)


def test_cli_renders_and_validates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tailguard.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["k8s", "render", str(SERVE), "-o", str(tmp_path / "out"),
                               "--autoscaler", "hpa"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / "17-horizontalpodautoscaler-tailguard-gateway.yaml").is_file()
    assert runner.invoke(app, ["k8s", "validate", str(tmp_path / "out")]).output == "valid\n"
    bad = tmp_path / "out" / "13-deployment-tailguard-gateway.yaml"
    bad.write_text(bad.read_text().replace("readinessProbe", "readinesProbe"))
    done = runner.invoke(app, ["k8s", "validate", str(tmp_path / "out")])
    assert done.exit_code == 1 and "readinesProbe" in done.output
    done = runner.invoke(app, ["k8s", "render", str(SERVE), "-o", str(tmp_path / "x"),
                               "--autoscaler", "both"])
    assert done.exit_code == 2 and "autoscaler" in done.output


def test_alert_rules_and_dashboards_ship_with_the_gateway() -> None:
    """Issue 15: the monitoring issue's rules and dashboards as cluster objects, the same
    bytes ``tailguard alerts render`` and ``tailguard dashboards render`` write."""
    from tailguard.k8s.monitoring import RULES_FILE
    from tailguard.observe.grafana import render_dashboards
    from tailguard.observe.slo_rules import render_rules, rules_document

    _, config = read_config_file(SERVE)
    plain = {o["metadata"]["name"]: o for o in serve_objects() if o["kind"] == "ConfigMap"}
    assert plain["tailguard-slo-rules"]["data"] == {RULES_FILE: render_rules(config)}
    boards = plain["tailguard-dashboards"]
    assert boards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert boards["data"] == render_dashboards(config)

    operator = serve_objects(monitoring="servicemonitor")
    for obj in operator:
        validate_object(obj)
    (rule,) = [o for o in operator if o["kind"] == "PrometheusRule"]
    assert rule["spec"] == rules_document(config)
    assert rule["metadata"]["labels"]["role"] == "alert-rules"
    assert "tailguard-slo-rules" not in {o["metadata"]["name"] for o in operator
                                         if o["kind"] == "ConfigMap"}  # never both

