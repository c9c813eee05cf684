"""Metrics in the Prometheus text format, read from the live parts at scrape time.

Nothing on the hot path touches a metrics object: drivers, queues and sinks
keep plain counters in their stats, and a collector turns them into metric
families when Prometheus (or `curl :9108/metrics`) asks. A part that has
figures to show implements `Measured`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.logs import get_logger

log = get_logger("gateway.metrics")


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    name: str  # without the gateway_ prefix, e.g. "modbus_line_utilisation"
    value: float
    help: str
    kind: Literal["counter", "gauge"] = "gauge"
    labels: tuple[tuple[str, str], ...] = ()


@runtime_checkable
class Measured(Protocol):
    def measurements(self) -> Iterable[Measurement]: ...


class PartsCollector(Collector):
    def __init__(self, parts: Sequence[object]) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for part in self.parts:
            if not isinstance(part, Measured):
                continue
            for m in part.measurements():
                name = f"gateway_{m.name}"
                family = families.get(name)
                if family is None:
                    label_names = [k for k, _ in m.labels]
                    family = (
                        CounterMetricFamily(name, m.help, labels=label_names)
                        if m.kind == "counter"
                        else GaugeMetricFamily(name, m.help, labels=label_names)
                    )
                    families[name] = family
                family.add_metric([v for _, v in m.labels], m.value)
        yield from families.values()


def render(parts: Sequence[object]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PartsCollector(parts))
    return generate_latest(registry)


async def serve_metrics(parts: Sequence[object], host: str, port: int) -> asyncio.Server:
    """A minimal HTTP endpoint: GET /metrics returns the text format, anything else 404."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                request = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
        if path.split(b"?")[0] == b"/metrics":
            body, status = render(parts), b"200 OK"
        else:
            body, status = b"not found; try /metrics\n", b"404 Not Found"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; version=0.0.4\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )
        with contextlib.suppress(ConnectionError):  # the scraper hung up; nothing to do
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("metrics.listening", url=f"http://{host}:{port}/metrics")
    return server
