"""A real Prometheus server watching one gateway, with tailguard's SLO rules loaded.

``tailguard monitor --config serve.yaml --gateway http://127.0.0.1:8000`` runs Debian's
``prometheus`` binary (unpacked by ``scripts/install-prometheus.sh`` into ``.tools/``, or on
``PATH``) on 127.0.0.1 with a generated config: one scrape job for the gateway's ``/metrics``
(with the admin key as a Bearer token when given: a tenant key would only see its own series),
and the rules of :mod:`tailguard.observe.slo_rules`. Its data lives in its own directory
(default ``$TAILGUARD_HOME/monitor``)::

    spec = MonitorSpec(gateway_url="http://127.0.0.1:8000", data_dir=Path(".tailguard/monitor"))
    with PrometheusServer(spec, rules_text=render_rules(config)) as server:
        print(server.url)            # http://127.0.0.1:PORT: /alerts, /graph, /api/v1/...
        server.wait()                # until Ctrl-C / SIGTERM (then stopped on exit)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import yaml

from tailguard.observe.slo_rules import RULES_FILE, prom_duration

__all__ = ["MonitorSpec", "PrometheusServer", "find_tool"]

# Where scripts/install-prometheus.sh unpacks the Debian package, relative to the checkout.
_TOOLS = Path(__file__).resolve().parents[3] / ".tools" / "prometheus" / "usr" / "bin"


def find_tool(name: str) -> Path | None:
    """``promtool`` or ``prometheus``: the project's unpacked copy, else the one on PATH."""
    local = _TOOLS / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass(frozen=True)
class MonitorSpec:
    """What the Prometheus server watches and how often."""

    gateway_url: str
    data_dir: Path
    api_key: str | None = None  # an admin key of the gateway (sees every tenant's series)
    scrape_interval_s: float = 5.0
    evaluation_interval_s: float = 5.0
    port: int = 0  # 0: a free port
    startup_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.gateway_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"gateway URL {self.gateway_url!r}: expected http://HOST:PORT")
        if self.scrape_interval_s <= 0 or self.evaluation_interval_s <= 0:
            raise ValueError("scrape and evaluation intervals must be > 0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_config(spec: MonitorSpec, rules_path: Path, key_path: Path | None) -> str:
    """The prometheus.yml text: global intervals, the rules file, one gateway job."""
    parts = urlsplit(spec.gateway_url)
    job: dict[str, object] = {
        "job_name": "tailguard",
        "scheme": parts.scheme,
        "metrics_path": (parts.path.rstrip("/") or "") + "/metrics",
        "static_configs": [{"targets": [parts.netloc]}],
    }
    if key_path is not None:
        # From a file, so the key is in no config that a status page or log might show.
        job["authorization"] = {"type": "Bearer", "credentials_file": str(key_path)}
    interval = prom_duration(spec.scrape_interval_s)
    document = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": prom_duration(spec.evaluation_interval_s)},
        "rule_files": [str(rules_path)],
        "scrape_configs": [job],
    }
    return yaml.safe_dump(document, sort_keys=False)


class PrometheusServer:
    """One ``prometheus`` process; :meth:`start` returns once it answers ``/-/ready``."""

    def __init__(self, spec: MonitorSpec, rules_text: str, binary: Path | None = None) -> None:
        self.spec = spec
        self._rules_text = rules_text
        self._binary = binary or find_tool("prometheus")
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = spec.port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = spec.data_dir / "prometheus.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> PrometheusServer:
        if self._binary is None:
            raise FileNotFoundError(
                "no prometheus binary: run scripts/install-prometheus.sh (unpacks Debian's "
                "package into .tools/) or put prometheus on PATH")
        data = self.spec.data_dir
        (data / "tsdb").mkdir(parents=True, exist_ok=True)
        rules_path = data / RULES_FILE
        rules_path.write_text(self._rules_text)
        key_path = None
        if self.spec.api_key:
            key_path = data / "gateway.key"
            key_path.touch(mode=0o600)
            key_path.chmod(0o600)
            key_path.write_text(self.spec.api_key)
        config_path = data / "prometheus.yml"
        config_path.write_text(scrape_config(self.spec, rules_path, key_path))
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(self._binary), f"--config.file={config_path}",
                 f"--storage.tsdb.path={data / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 # A monitor for one gateway: nothing worth keeping past a day of windows.
                 "--storage.tsdb.retention.time=31d"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # Ctrl-C reaches us, and we stop it in order
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready on {self.url} after "
                           f"{self.spec.startup_timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait(self) -> int:
        """Block until the server exits (or the caller is interrupted); its exit status."""
        assert self._proc is not None
        return self._proc.wait()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (Prometheus flushes its head block and exits), SIGKILL after a timeout."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
