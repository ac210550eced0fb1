"""Prometheus metrics with the Rust runtime's names, labels and buckets, served on `/metrics`
at `ORBIT_METRICS_ADDR`, so one dashboard and one alert rule cover functions in any language."""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from typing import Optional

log = logging.getLogger("orbit_function.metrics")

LATENCY_BUCKETS = (
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
SIZE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0)

Labels = tuple[tuple[str, str], ...]


class Registry:
    """Counters, gauges and histograms, each keyed by name and labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[tuple[str, Labels], float] = {}
        self._histograms: dict[tuple[str, Labels], list[float]] = {}

    def counter(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, tuple(labels.items()))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + value

    def gauge(self, name: str, value: float, add: bool = False, **labels: str) -> None:
        key = (name, tuple(labels.items()))
        with self._lock:
            self._gauges[key] = (self._gauges.get(key, 0) if add else 0) + value

    def observe(self, name: str, value: float, count: int = 1, **labels: str) -> None:
        """Records `value` `count` times."""
        buckets = _buckets(name)
        key = (name, tuple(labels.items()))
        with self._lock:
            state = self._histograms.get(key)
            if state is None:
                state = self._histograms[key] = [0.0] * (len(buckets) + 2)
            index = bisect.bisect_left(buckets, value)
            state[index] += count
            state[-2] += value * count
            state[-1] += count

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name in sorted({n for n, _ in table}):
                    lines.append(f"# TYPE {name} {kind}")
                    for (n, labels), value in table.items():
                        if n == name:
                            lines.append(f"{name}{_labels(labels)} {_number(value)}")
            for name in sorted({n for n, _ in self._histograms}):
                lines.append(f"# TYPE {name} histogram")
                buckets = _buckets(name)
                for (n, labels), state in self._histograms.items():
                    if n != name:
                        continue
                    running = 0.0
                    for bound, count in zip(buckets, state):
                        running += count
                        lines.append(f"{name}_bucket{_labels(labels + (('le', _number(bound)),))} {_number(running)}")
                    lines.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {_number(state[-1])}")
                    lines.append(f"{name}_sum{_labels(labels)} {_number(state[-2])}")
                    lines.append(f"{name}_count{_labels(labels)} {_number(state[-1])}")
        return "\n".join(lines) + "\n"


def _buckets(name: str) -> tuple[float, ...]:
    return SIZE_BUCKETS if name.endswith("batch_size") or name.endswith("_jobs") else LATENCY_BUCKETS


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"'.replace("\n", " ") for k, v in labels)
    return "{" + inner + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


REGISTRY = Registry()


async def serve(address: Optional[tuple[str, int]], registry: Registry = REGISTRY) -> Optional[asyncio.AbstractServer]:
    """Answers every HTTP GET with the metrics (Prometheus text format 0.0.4)."""
    if address is None:
        return None

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = registry.render().encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, address[0], address[1])
    log.info("serving Prometheus metrics", extra={"addr": f"{address[0]}:{address[1]}"})
    return server
