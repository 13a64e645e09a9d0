"""A real Prometheus (Debian's 2.42 package) on 127.0.0.1, scraping the local stack.

The test harness and `cryptopipe up` use it to prove what a cluster's Prometheus would see: the same
metrics, the chart's alert rules evaluated, the dashboards' queries answered.

    prom = PrometheusServer(work_dir, scrape_interval="1s")
    prom.add_target("ingestion", "127.0.0.1:8080", {"namespace": "local", "pipeline": "main", "component": "ingestion"})
    prom.start(rule_files=[rules_yaml])
    prom.query('rate(cryptopipe_ingest_trades_produced_total[1m])')

Targets are file-based service discovery (``targets/*.json``), so they can be added or removed while
Prometheus runs; it re-reads the folder every second (refresh_interval).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

import yaml

from cryptopipe_dev.stack import paths
from cryptopipe_dev.stack.procs import LOOPBACK, ManagedProcess, free_port, port_open, wait_for

log = logging.getLogger(__name__)


class PrometheusError(RuntimeError):
    """Prometheus answered a query or API call with an error (the message is Prometheus' own)."""


def promtool(*args: str, input_text: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run promtool (which ships with the prometheus package) and return the finished process."""
    binary = paths.require_file(paths.promtool_bin(), "promtool (Debian package prometheus)")
    return subprocess.run([str(binary), *args], input=input_text, capture_output=True, text=True, timeout=timeout)


class PrometheusServer:
    def __init__(
        self,
        work_dir: Path,
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        binary: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.binary = binary or paths.prometheus_bin()
        self.startup_timeout = startup_timeout
        self.targets_dir = self.work_dir / "targets"
        self.rules_dir = self.work_dir / "rules"
        self.config_path = self.work_dir / "prometheus.yml"
        self.log_path = self.work_dir / "prometheus.log"
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("prometheus not started")
        return f"http://{LOOPBACK}:{self.port}"

    # -- configuration -------------------------------------------------------------------------
    def add_target(self, name: str, address: str, labels: dict[str, str], *, job: str | None = None) -> None:
        """Scrape ``address`` (host:port, path /metrics) with ``labels`` attached to every series,
        as a cluster's PodMonitor relabeling attaches namespace, pipeline and component."""
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        body = [{"targets": [address], "labels": {"job": job or name, **labels}}]
        tmp = self.targets_dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(body))
        tmp.replace(self.targets_dir / f"{name}.json")  # Prometheus never reads half a file

    def remove_target(self, name: str) -> None:
        (self.targets_dir / f"{name}.json").unlink(missing_ok=True)

    def _config(self, rule_files: list[Path]) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {
                    "job_name": "cryptopipe",
                    # the operator's pipeline_condition carries namespace/pipeline labels of its own
                    "honor_labels": True,
                    "file_sd_configs": [{"files": [str(self.targets_dir / "*.json")], "refresh_interval": "1s"}],
                }
            ],
        }

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *, rule_files: list[Path] | tuple[Path, ...] = ()) -> Self:
        binary = paths.require_file(self.binary, "prometheus (Debian package prometheus)")
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        copied = []
        for index, path in enumerate(rule_files):
            target = self.rules_dir / f"{index:02d}-{Path(path).name}"
            shutil.copyfile(path, target)
            copied.append(target)
        self.config_path.write_text(yaml.safe_dump(self._config(copied), sort_keys=False))
        checked = promtool("check", "config", str(self.config_path))
        if checked.returncode != 0:
            raise PrometheusError(f"promtool check config {self.config_path}:\n{checked.stdout}{checked.stderr}")
        self.port = self.port or free_port()
        self.process = ManagedProcess(
            [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.work_dir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.format=json",
            ],
            log_path=self.log_path,
            name="prometheus",
        ).start()
        wait_for(
            lambda: port_open(LOOPBACK, self.port) and self._ready(),
            self.startup_timeout,
            "prometheus",
            process=self.process,
        )
        log.info("prometheus ready", extra={"url": self.url})
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP API ------------------------------------------------------------------------------
    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET /api/v1/PATH and return ``data``; a Prometheus error raises PrometheusError."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422 carry Prometheus' error JSON
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')} (GET {url})")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the result samples (for a scalar or string result, one pseudo-sample)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def active_targets(self) -> list[dict[str, Any]]:
        return self.api("targets", {"state": "active"})["activeTargets"]

    def rule_groups(self) -> list[dict[str, Any]]:
        return self.api("rules")["groups"]

    def alerts(self, name: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        found = self.api("alerts")["alerts"]
        return [
            a
            for a in found
            if (name is None or a["labels"].get("alertname") == name) and (state is None or a["state"] == state)
        ]

    def wait_for_targets_up(self, names: list[str], timeout: float) -> None:
        def all_up() -> bool:
            health = {t["labels"].get("job"): t["health"] for t in self.active_targets()}
            return all(health.get(n) == "up" for n in names)

        wait_for(all_up, timeout, f"prometheus targets {names} up", process=self.process)
