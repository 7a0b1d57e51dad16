"""CLI commands: ``tailguard k8s render|render-job|validate`` — Kubernetes manifests.

``render CONFIG -o DIR`` writes the serving objects of a serve config, ``render-job JOB -o DIR``
a KubeRay RayJob for a training job, ``validate DIR`` checks rendered files offline (built-in
kinds with kubernetes-validate, custom resources against the vendored CRD schemas).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

k8s_app = typer.Typer(help="Kubernetes manifests: render a serve config or training job.",
                      no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(k8s_app, name="k8s")


def _spec(path: Path | None, **overrides: Any) -> Any:
    import yaml
    from pydantic import ValidationError

    from tailguard.k8s.spec import K8sSpec

    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(path.read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return K8sSpec.model_validate(data)
    except ValidationError as exc:
        from tailguard.serve.reconcile import describe_validation_error

        typer.echo(f"error: {path or 'k8s settings'}: {describe_validation_error(exc, data)}",
                   err=True)
        raise typer.Exit(2) from None


def _write(objects: list[dict[str, Any]], out: Path) -> None:
    from tailguard.k8s.render import write_manifests

    for path in write_manifests(objects, out):
        typer.echo(str(path))


@k8s_app.command("render")
def render_cmd(
    config: Path = typer.Argument(..., help="serve YAML"),
    out: Path = typer.Option(..., "-o", "--out", help="directory for the manifests"),
    k8s: Path | None = typer.Option(None, "--k8s", help="cluster settings YAML (K8sSpec)"),
    autoscaler: str | None = typer.Option(None, help="keda (P99), hpa (CPU) or none"),
    namespaces: str | None = typer.Option(None, help="per-tenant or shared"),
    image: str | None = typer.Option(None, help="the gateway image"),
) -> None:
    """Write the Kubernetes objects serving CONFIG into DIR (one file per object)."""
    from tailguard.k8s.render import render_serve
    from tailguard.serve.live_apply import ConfigInvalid, read_config_file

    spec = _spec(k8s, autoscaler=autoscaler, tenant_namespaces=namespaces, image=image)
    try:
        _, cfg = read_config_file(config)
        objects = render_serve(cfg, spec)
    except (ConfigInvalid, ValueError) as exc:
        typer.echo(f"error: {config}: {exc}", err=True)
        raise typer.Exit(2) from None
    _write(objects, out)


@k8s_app.command("render-job")
def render_job_cmd(
    job: Path = typer.Argument(..., help="training job YAML"),
    out: Path = typer.Option(..., "-o", "--out", help="directory for the manifests"),
    k8s: Path | None = typer.Option(None, "--k8s", help="cluster settings YAML (K8sSpec)"),
) -> None:
    """Write a KubeRay RayJob (and its ConfigMap) running JOB with the Ray engine."""
    import yaml

    from tailguard.k8s.render import render_job
    from tailguard.train.job import JobError, parse_job

    spec = _spec(k8s)
    try:
        raw = yaml.safe_load(job.read_text())
        parsed = parse_job(raw)  # paths as written: they are the pods', not this machine's
    except (OSError, yaml.YAMLError, JobError) as exc:
        typer.echo(f"error: {job}: {exc}", err=True)
        raise typer.Exit(2) from None
    _write(render_job(parsed, raw, spec), out)


@k8s_app.command("validate")
def validate_cmd(directory: Path = typer.Argument(..., help="rendered manifests")) -> None:
    """Validate every YAML file in DIRECTORY offline (exit 1 naming the first bad field)."""
    import yaml

    from tailguard.k8s.validate import ManifestInvalid, validate_object

    bad = 0
    for path in sorted(directory.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            try:
                validate_object(obj)
            except ManifestInvalid as exc:
                typer.echo(f"{path.name}: {exc}", err=True)
                bad += 1
    if bad:
        raise typer.Exit(1)
    typer.echo("valid")
