"""A real Prometheus server (Debian package `prometheus`) scraping canaryflow's servers on loopback."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from canaryflow.app.local.process import ManagedProcess, free_port, http_ok

INSTALL_HINT = "install it with: apt-get install -y prometheus (Debian/Ubuntu, as root)"


class PrometheusNotInstalled(RuntimeError):
    pass


@dataclass
class PrometheusServer:
    process: ManagedProcess
    port: int
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


def prometheus_binary() -> str | None:
    """Path of the prometheus binary, or None when it is not installed."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


def scrape_config(
    targets: Sequence[str], interval_s: float = 1.0, file_sd: Path | None = None
) -> dict[str, object]:
    """A config scraping `targets` (host:port) fast enough for a canary step of seconds, and, with
    `file_sd`, the targets listed in that file (file-based discovery, re-read when it changes: the
    pods of each version as they come and go)."""
    interval = f"{max(int(interval_s * 1000), 100)}ms"
    jobs: list[dict[str, object]] = [
        {
            "job_name": "canaryflow",
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{"targets": list(targets)}],
        }
    ]
    if file_sd is not None:
        jobs.append(
            {
                "job_name": "versions",
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "file_sd_configs": [{"files": [str(file_sd)], "refresh_interval": "1s"}],
            }
        )
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": jobs}


def start_prometheus(
    workdir: Path,
    targets: Sequence[str],
    port: int | None = None,
    interval_s: float = 1.0,
    timeout: float = 60.0,
    file_sd: Path | None = None,
) -> PrometheusServer:
    binary = prometheus_binary()
    if binary is None:
        raise PrometheusNotInstalled(f"prometheus is not installed; {INSTALL_HINT}")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(scrape_config(targets, interval_s, file_sd), sort_keys=True))
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
    ]
    proc = ManagedProcess("prometheus", argv, workdir / "prometheus.log", cwd=workdir)
    proc.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"), timeout, "ready")
    return PrometheusServer(process=proc, port=port, config_path=config_path)


def has_scraped(url: str, labels: Mapping[str, str], timeout_s: float = 2.0) -> bool:
    """Whether Prometheus has scraped a target carrying `labels` and found it up (`up == 1`)."""
    selector = ",".join(f'{name}="{value}"' for name, value in labels.items())
    try:
        answer = httpx.get(
            f"{url}/api/v1/query", params={"query": f"up{{{selector}}} == 1"}, timeout=timeout_s
        )
        return bool(answer.json()["data"]["result"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False
