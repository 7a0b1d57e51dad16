"""A real Prometheus server watching one gateway, with tailguard's SLO rules loaded.

``tailguard monitor --config serve.yaml --gateway http://127.0.0.1:8000`` runs Debian's
``prometheus`` binary (unpacked by ``scripts/install-prometheus.sh`` into ``.tools/``, or on
``PATH``) on 127.0.0.1 with a generated config: one scrape job for the gateway's ``/metrics``
(with the admin key as a Bearer token when given: a tenant key would only see its own series),
and the rules of :mod:`tailguard.observe.slo_rules`. Its data lives in its own directory
(default ``$TAILGUARD_HOME/monitor``). With ``alertmanager_webhook``, Debian's
``prometheus-alertmanager`` runs beside it (one instance, no gossip) and posts every alert,
and its resolution, to that URL (Alertmanager's webhook JSON)::

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

__all__ = ["AlertmanagerServer", "MonitorSpec", "PrometheusServer", "find_tool"]

# Where scripts/install-prometheus.sh unpacks the Debian packages, relative to the checkout.
_TOOLS = Path(__file__).resolve().parents[3] / ".tools" / "prometheus" / "usr" / "bin"
# alertmanager-local (see the script) reads its templates relative to this directory.
_SHARE = _TOOLS.parent / "share" / "prometheus"


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
    # With a webhook URL, an Alertmanager on 127.0.0.1 takes Prometheus's alerts and posts
    # them there (grouped by subject and severity; resolved ones too).
    alertmanager_webhook: str | None = None
    group_wait_s: float = 30.0  # Alertmanager: wait before the first notice of a group
    group_interval_s: float = 300.0  # ... and between notices of the same group

    def __post_init__(self) -> None:
        parts = urlsplit(self.gateway_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"gateway URL {self.gateway_url!r}: expected http://HOST:PORT")
        if self.scrape_interval_s <= 0 or self.evaluation_interval_s <= 0:
            raise ValueError("scrape and evaluation intervals must be > 0")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies, so a
    monitor killed with SIGKILL leaves no Prometheus behind (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_config(spec: MonitorSpec, rules_path: Path, key_path: Path | None,
                  alertmanager: str | None = None) -> str:
    """The prometheus.yml text: global intervals, the rules file, one gateway job, and the
    Alertmanager (``HOST:PORT``) to send alerts to, if any."""
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
    document: dict[str, object] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": prom_duration(spec.evaluation_interval_s)},
        "rule_files": [str(rules_path)],
        "scrape_configs": [job],
    }
    if alertmanager is not None:
        document["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager]}]}]}
    return yaml.safe_dump(document, sort_keys=False)


def alertmanager_config(spec: MonitorSpec) -> str:
    """The alertmanager.yml text: every alert to the webhook, grouped by subject."""
    assert spec.alertmanager_webhook is not None
    document = {
        "route": {"receiver": "webhook",
                  "group_by": ["alertname", "deployment", "tenant", "severity"],
                  "group_wait": prom_duration(spec.group_wait_s),
                  "group_interval": prom_duration(spec.group_interval_s),
                  "repeat_interval": "4h"},
        "receivers": [{"name": "webhook", "webhook_configs": [
            {"url": spec.alertmanager_webhook, "send_resolved": True}]}],
    }
    return yaml.safe_dump(document, sort_keys=False)


class _Daemon:
    """One server process of ours on 127.0.0.1: started, awaited on ``/-/ready``, stopped."""

    name = ""

    def __init__(self, binary: Path | None, data_dir: Path, port: int,
                 startup_timeout_s: float) -> None:
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / f"{self.name}.log"
        self._startup_timeout_s = startup_timeout_s

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _launch(self, args: list[str], cwd: Path | None = None) -> None:
        if self._binary is None:
            raise FileNotFoundError(
                f"no {self.name} binary: run scripts/install-prometheus.sh (unpacks Debian's "
                "packages into .tools/) or put it on PATH")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(self._binary), *args], cwd=cwd,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
                preexec_fn=_die_with_parent)
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready on {self.url} after "
                           f"{self._startup_timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

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


class AlertmanagerServer(_Daemon):
    """Debian's Alertmanager, one instance (no cluster gossip): the project's unpacked
    ``alertmanager-local``, else an installed ``prometheus-alertmanager``."""

    name = "alertmanager"

    def __init__(self, spec: MonitorSpec) -> None:
        local = find_tool("alertmanager-local")
        super().__init__(local or find_tool("prometheus-alertmanager"),
                         spec.data_dir / "alertmanager", 0, spec.startup_timeout_s)
        self._cwd = _SHARE if local is not None else None
        self.spec = spec

    def start(self) -> AlertmanagerServer:
        config_path = self.data_dir / "alertmanager.yml"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(alertmanager_config(self.spec))
        self._launch([f"--config.file={config_path}",
                      f"--storage.path={self.data_dir / 'data'}",
                      f"--web.listen-address=127.0.0.1:{self.port}",
                      "--cluster.listen-address="],  # empty: no gossip port, one instance
                     cwd=self._cwd)
        return self


class PrometheusServer(_Daemon):
    """The ``prometheus`` server (and, with ``spec.alertmanager_webhook``, an Alertmanager
    started before it and stopped after it); :meth:`start` returns once both are ready."""

    name = "prometheus"

    def __init__(self, spec: MonitorSpec, rules_text: str, binary: Path | None = None) -> None:
        super().__init__(binary or find_tool("prometheus"), spec.data_dir, spec.port,
                         spec.startup_timeout_s)
        self.spec = spec
        self._rules_text = rules_text
        self.alertmanager = (AlertmanagerServer(spec)
                             if spec.alertmanager_webhook is not None else None)

    def start(self) -> PrometheusServer:
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
        alertmanager = None
        if self.alertmanager is not None:
            self.alertmanager.start()
            alertmanager = f"127.0.0.1:{self.alertmanager.port}"
        config_path = data / "prometheus.yml"
        config_path.write_text(scrape_config(self.spec, rules_path, key_path, alertmanager))
        try:
            self._launch([f"--config.file={config_path}",
                          f"--storage.tsdb.path={data / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{self.port}",
                          # Room for the longest window: the 30-day error budget.
                          "--storage.tsdb.retention.time=31d"])
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self) -> int:
        """Block until a server exits (or the caller is interrupted); its exit status."""
        while True:
            for daemon in (self, self.alertmanager):
                code = None if daemon is None else daemon.poll()
                if code is not None:
                    return code
            time.sleep(0.5)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        code = super().stop(timeout_s)
        if self.alertmanager is not None:
            self.alertmanager.stop(timeout_s)
        return code

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
