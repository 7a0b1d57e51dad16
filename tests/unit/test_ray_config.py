"""Ray settings in the serve config, and the errors a user meets before anything starts."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from tailguard import raylink
from tailguard.serve.config import DeploymentSpec, ServeConfig
from tailguard.serve.replicas.ray_backend import replica_resources

ECHO = {"name": "echo", "model": "tailguard.models.echo:Echo"}


def test_a_deployment_inherits_the_server_backend_or_sets_its_own() -> None:
    cfg = ServeConfig.model_validate({"backend": "ray", "ray_address": "10.0.0.1:6379",
                                      "deployments": [ECHO, {**ECHO, "name": "e2",
                                                             "backend": "local"}]})
    assert [cfg.backend_of(d) for d in cfg.deployments] == ["ray", "local"]
    assert cfg.ray_address_of() == "10.0.0.1:6379"


def test_ray_resources_on_a_local_deployment_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="num_gpus only apply to replicas on Ray"):
        DeploymentSpec.model_validate({**ECHO, "backend": "local", "num_gpus": 1})


def test_one_gateway_talks_to_one_ray_cluster() -> None:
    with pytest.raises(ValidationError, match="one Ray cluster"):
        ServeConfig.model_validate({"ray_address": "a:1", "deployments": [
            {**ECHO, "backend": "ray", "ray_address": "b:2"}]})


@pytest.mark.parametrize(("spec", "need"), [
    ({}, {"CPU": 1.0}),
    ({"options": {"threads": 2}}, {"CPU": 2.0}),
    ({"num_cpus": 0.5, "num_gpus": 1, "resources": {"accel": 1}},
     {"CPU": 0.5, "GPU": 1, "accel": 1}),
])
def test_what_a_replica_asks_ray_for(spec: dict, need: dict) -> None:
    assert replica_resources(DeploymentSpec.model_validate({**ECHO, "backend": "ray",
                                                            **spec})) == need


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def test_an_unreachable_cluster_is_one_error_naming_the_address() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    # the check connect() makes first (this test process may already be connected to the
    # session's cluster by the Ray engine's tests; the subprocess test below is not)
    with pytest.raises(raylink.RayUnavailable, match=f"cannot reach the Ray cluster at {address}"):
        raylink.check_reachable(address)
    with pytest.raises(raylink.RayUnavailable, match="expected 'auto', HOST:PORT"):
        raylink.check_reachable("no-port-here")


def test_serve_against_an_unreachable_cluster_exits_2_naming_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    address = f"127.0.0.1:{_closed_port()}"
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"backend": "ray", "ray_address": address,
                                      "deployments": [ECHO]}))
    out = subprocess.run([sys.executable, "-m", "tailguard", "serve", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"cannot reach the Ray cluster at {address}" in out.stderr
