"""Settings from the environment: the same `ORBIT_*` variables, defaults and meanings as the
Rust runtime's (docs/configuration.md), so a Python replica is configured like any other."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def setting(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None


def env_or(name: str, default: T, parse: Callable[[str], T]) -> T:
    value = setting(name)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError as err:
        raise ConfigError(f"environment variable {name}: {err}") from None


def default_worker_id(prefix: str) -> str:
    pid = os.getpid()
    if pid == 1:
        host = os.environ.get("HOSTNAME") or socket.gethostname()
        if host:
            return f"{prefix}-{host}"
    return f"{prefix}-{pid}"


@dataclass(frozen=True)
class Config:
    nats_url: str
    worker_id: str
    fetch_batch: int
    fetch_max_bytes: int
    inflight_batches: int
    ack_wait: float
    max_deliver: int
    max_ack_pending: int
    metrics_addr: Optional[tuple[str, int]]
    sync_concurrency: int
    sync_record_acked: bool
    started_notice_after: float

    @staticmethod
    def from_env(function: str) -> "Config":
        record = env_or("ORBIT_SYNC_RECORD", "acked", str)
        if record not in ("acked", "sent"):
            raise ConfigError(f"environment variable ORBIT_SYNC_RECORD: {record!r}: must be acked or sent")
        return Config(
            nats_url=env_or("ORBIT_NATS_URL", "nats://127.0.0.1:4222", str),
            worker_id=env_or("ORBIT_WORKER_ID", default_worker_id(function), str),
            fetch_batch=max(1, env_or("ORBIT_FETCH_BATCH", 256, int)),
            fetch_max_bytes=max(1024, env_or("ORBIT_FETCH_MAX_BYTES", 2 << 20, int)),
            inflight_batches=max(1, env_or("ORBIT_INFLIGHT_BATCHES", 4, int)),
            ack_wait=max(100, env_or("ORBIT_ACK_WAIT_MS", 30_000, int)) / 1000,
            max_deliver=max(2, env_or("ORBIT_MAX_DELIVER", 5, int)),
            max_ack_pending=max(1, env_or("ORBIT_MAX_ACK_PENDING", 4096, int)),
            metrics_addr=env_or("ORBIT_METRICS_ADDR", None, _address),
            sync_concurrency=max(1, env_or("ORBIT_SYNC_CONCURRENCY", 1024, int)),
            sync_record_acked=record == "acked",
            started_notice_after=env_or("ORBIT_STARTED_NOTICE_MS", 50, int) / 1000,
        )


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class StreamSettings:
    """The streams' limits, used only when a replica is the first to need a stream."""

    jobs_max_msgs: int
    jobs_max_bytes: int
    duplicate_window: float
    results_max_age: float
    results_max_bytes: int
    logs_max_bytes: int
    logs_max_age: float
    replicas: int

    @staticmethod
    def from_env() -> "StreamSettings":
        return StreamSettings(
            jobs_max_msgs=env_or("ORBIT_JOBS_MAX_MSGS", 1_000_000, int),
            jobs_max_bytes=env_or("ORBIT_JOBS_MAX_BYTES", 1 << 30, int),
            duplicate_window=float(env_or("ORBIT_DUPLICATE_WINDOW_SECS", 600, int)),
            results_max_age=float(env_or("ORBIT_RESULTS_MAX_AGE_SECS", 7 * 24 * 3600, int)),
            results_max_bytes=env_or("ORBIT_RESULTS_MAX_BYTES", 4 << 30, int),
            logs_max_bytes=env_or("ORBIT_LOGS_MAX_BYTES", 256 << 20, int),
            logs_max_age=float(env_or("ORBIT_LOGS_MAX_AGE_SECS", 3 * 24 * 3600, int)),
            replicas=max(1, env_or("ORBIT_STREAM_REPLICAS", 1, int)),
        )
