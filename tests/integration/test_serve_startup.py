"""What a new user meets when starting ``tailguard serve`` (issue 19): the README's model
package found beside the config, and start-up errors as one line with exit status 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.integration.conftest import ServerProcess

# The README's "Writing a model" example, as written.
DOUBLER = textwrap.dedent('''
    from tailguard.models import Model, TensorSpec

    class Doubler(Model):
        inputs = (TensorSpec("x", "FP32", (-1, 4)),)
        outputs = (TensorSpec("y", "FP32", (-1, 4)),)

        def setup(self) -> None:
            self.factor = 2.0

        def predict(self, batch):
            return {"y": batch["x"] * self.factor}
''')


def _serve(config: dict[str, object], where: Path, cwd: Path,
           timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    path = where / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "TAILGUARD_HOME": str(where / "home")}
    return subprocess.run([sys.executable, "-m", "tailguard", "serve", "--config", str(path)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return errors[0]


def test_package_beside_the_config_is_served(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "mypackage").mkdir(parents=True)
    (project / "mypackage" / "__init__.py").write_text("")
    (project / "mypackage" / "models.py").write_text(DOUBLER)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = {"deployments": [{"name": "double", "model": "mypackage.models:Doubler"}]}
    # Started from another directory: only the config's directory can supply the package.
    cwd = Path.cwd()
    os.chdir(elsewhere)
    try:
        server = ServerProcess(config, project, home=tmp_path / "home")
    finally:
        os.chdir(cwd)
    try:
        server.wait_ready(120)
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        reply = server.post("/v2/models/double/infer", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
    finally:
        server.stop()


def test_unknown_module_is_one_line_naming_field_and_fix(tmp_path: Path) -> None:
    proc = _serve({"deployments": [{"name": "d", "model": "nopackage.models:Nope"}]},
                  tmp_path, tmp_path)
    line = _one_line_error(proc)
    assert "deployment 'd', field 'model'" in line and "nopackage" in line
    assert "PYTHONPATH" in line and str(tmp_path) in line


def test_missing_artifact_is_one_line_naming_field(tmp_path: Path) -> None:
    proc = _serve({"deployments": [{"name": "d", "artifact": "digits:7"}]}, tmp_path, tmp_path)
    line = _one_line_error(proc)
    assert "deployment 'd', field 'artifact'" in line and "digits:7" in line


def test_invalid_config_names_the_file(tmp_path: Path) -> None:
    proc = _serve({"deployments": [{"name": "d", "model": "x:Y", "replicas": -1}]},
                  tmp_path, tmp_path)
    assert proc.returncode == 2 and str(tmp_path / "serve.yaml") in proc.stderr


def test_port_in_use_fails_before_replicas_start(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = _serve({"port": port, "deployments": [
            {"name": "echo", "model": "tailguard.models.echo:Echo"}]}, tmp_path, tmp_path)
    line = _one_line_error(proc)
    assert f"127.0.0.1:{port} is already in use" in line and "--port" in line
    assert "replica" not in proc.stderr.lower()
