"""Reading metrics back as a test sees them: a process's `/metrics` page parsed with
prometheus-client's own parser, and a real Prometheus server scraping a stack."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scripts.isolation import free_port

Sample = tuple[str, frozenset[tuple[str, str]], float]


def parse(text: str) -> list[Sample]:
    return [
        (s.name, frozenset(s.labels.items()), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(value for n, have, value in samples if n == name and wanted <= have)


def series(samples: Iterable[Sample], name: str, label: str) -> dict[str, float]:
    """`name` summed by one label's values, those that are not 0."""
    out: dict[str, float] = {}
    for n, have, value in samples:
        if n == name:
            key = dict(have).get(label, "")
            out[key] = out.get(key, 0.0) + value
    return {key: value for key, value in out.items() if value}


async def scrape(client: httpx.AsyncClient, base_urls: Iterable[str]) -> list[Sample]:
    """Every sample of every given process, as one list (replicas add up)."""
    samples: list[Sample] = []
    for url in base_urls:
        response = await client.get(f"{url}/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        samples += parse(response.text)
    return samples


PROMETHEUS = shutil.which("prometheus")
SCRAPE_INTERVAL = "1s"


@dataclass
class PrometheusServer:
    """Debian's `prometheus` on a free port, scraping `targets` (job -> host:port list)
    every second, with its data in `workdir`; the jobs named in `credentials` send that
    file's bearer credential."""

    targets: Mapping[str, list[str]]
    workdir: Path
    port: int = field(default_factory=free_port)
    rule_files: list[Path] = field(default_factory=list)
    credentials: Mapping[str, Path] = field(default_factory=dict)
    _process: asyncio.subprocess.Process | None = None
    _client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        if PROMETHEUS is None:
            raise RuntimeError("the prometheus server is not installed (Debian: prometheus)")
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
                | (
                    {"authorization": {"type": "Bearer", "credentials_file": str(secret)}}
                    if (secret := self.credentials.get(job))
                    else {}
                )
                for job, hosts in self.targets.items()
            ],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        log = (self.workdir / "prometheus.log").open("w")
        self._process = await asyncio.create_subprocess_exec(
            PROMETHEUS,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            stdout=log,
            stderr=log,
        )
        log.close()
        self._client = httpx.AsyncClient(base_url=self.url, timeout=10)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await self._client.get("/-/ready")).status_code == 200:
                    return self
            if self._process.returncode is not None or time.monotonic() > deadline:
                output = (self.workdir / "prometheus.log").read_text()[-2000:]
                await self.__aexit__(None, None, None)
                raise RuntimeError(f"prometheus did not get ready:\n{output}")
            await asyncio.sleep(0.2)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        assert self._client is not None
        response = await self._client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def value(self, expr: str) -> float | None:
        """The single value an expression gives now, or None when it gives nothing."""
        result = await self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    async def scraped_since(self, moment: float, timeout: float = 30) -> None:
        """Wait until every target's latest scrape started after `moment` (a time.time()),
        so what the targets counted before it is in."""
        deadline = time.monotonic() + timeout
        while (oldest := await self.value("min(timestamp(up))")) is None or oldest <= moment:
            assert time.monotonic() < deadline, f"no scrape of every target since {moment}"
            await asyncio.sleep(0.2)

    async def rules(self) -> list[dict[str, Any]]:
        """Every alerting rule loaded, with its health and state."""
        assert self._client is not None
        body = (await self._client.get("/api/v1/rules")).json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    async def targets_up(self) -> dict[str, str]:
        return {url: health for (_, url), (health, _) in (await self.target_states()).items()}

    async def target_states(self) -> dict[tuple[str, str], tuple[str, str]]:
        """Each target's health and last scrape error, by its job and URL."""
        assert self._client is not None
        body = (await self._client.get("/api/v1/targets")).json()
        return {
            (t["labels"]["job"], t["scrapeUrl"]): (t["health"], t["lastError"])
            for t in body["data"]["activeTargets"]
        }
