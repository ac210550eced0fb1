"""Logs: to stderr for people, and on `orbit.logs.<service>` for the log store, as bundles of
the Rust runtime's log records (docs/contract.md), so one query finds every line of a job
whichever language ran it. Publishing never waits on the store: a bounded queue drops (and
counts) what it cannot hold."""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import time
from typing import Any, Optional

from .contract import dumps, log_subject, new_job_id, timestamp
from .metrics import REGISTRY

_LEVELS = {"CRITICAL": "ERROR", "ERROR": "ERROR", "WARNING": "WARN", "INFO": "INFO", "DEBUG": "DEBUG"}
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
QUEUE_LIMIT = 10_000
BUNDLE = 500


class BusHandler(logging.Handler):
    """Turns each log record into an Orbit log record and queues it for the bus."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.service = "function"
        self.worker = "function"

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.queue) >= QUEUE_LIMIT:
            REGISTRY.counter("orbit_logs_dropped_total", reason="full")
            return
        fields = extra_fields(record)
        job_id = fields.pop("job_id", None)
        trace = fields.pop("trace_id", None)
        document: dict[str, Any] = {
            "id": new_job_id(),
            "@timestamp": timestamp(int(record.created * 1e9)),
            "level": _LEVELS.get(record.levelname, "INFO"),
            "target": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "worker": self.worker,
        }
        if job_id is not None:
            document["job_id"] = str(job_id)
        if trace is not None:
            document["trace_id"] = str(trace)
        if record.exc_info:
            fields["exception"] = logging.Formatter().formatException(record.exc_info)
        if fields:
            document["fields"] = fields
        self.queue.append(document)


class StderrFormatter(logging.Formatter):
    """`time LEVEL target: message key=value ...`, like the Rust services' lines."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in extra_fields(record).items())
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{when}.{int(record.msecs):03d}Z {_LEVELS.get(record.levelname, 'INFO'):>5} {record.name}: {record.getMessage()}"
        if fields:
            line += " " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (`ORBIT_LOG_FORMAT=json`), shaped like the Rust services'
    (tracing-subscriber's): timestamp, level, fields (the message among them), target."""

    def format(self, record: logging.LogRecord) -> str:
        fields = extra_fields(record)
        fields["message"] = record.getMessage()
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        document = {
            "timestamp": timestamp(int(record.created * 1e9)),
            "level": _LEVELS.get(record.levelname, "INFO"),
            "fields": fields,
            "target": record.name,
        }
        return dumps(document).decode()


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a call gave in `extra=`, as JSON values."""
    return {k: _jsonable(v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


HANDLER = BusHandler()


def init(level: Optional[str] = None, json_lines: bool = False) -> None:
    """Logs to stderr (JSON lines with `json_lines`) and to the bus queue (shipped once
    connected)."""
    root = logging.getLogger()
    if any(isinstance(h, BusHandler) for h in root.handlers):
        return
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JsonFormatter() if json_lines else StderrFormatter())
    root.addHandler(stderr)
    root.addHandler(HANDLER)
    root.setLevel(level or "INFO")
    logging.getLogger("nats").setLevel(logging.WARNING)


async def ship(client: Any, service: str, worker: str, stop: asyncio.Event) -> None:
    """Publishes queued records on `orbit.logs.<service>` in bundles until `stop`, then once
    more."""
    HANDLER.service, HANDLER.worker = service, worker
    subject = log_subject(service)
    while True:
        stopping = stop.is_set()
        while HANDLER.queue:
            batch = [HANDLER.queue.popleft() for _ in range(min(BUNDLE, len(HANDLER.queue)))]
            try:
                await client.publish(subject, b"[" + b",".join(dumps(r) for r in batch) + b"]")
                REGISTRY.counter("orbit_logs_shipped_total", len(batch), service=service)
            except Exception:  # noqa: BLE001 - logging must never stop the function
                REGISTRY.counter("orbit_logs_dropped_total", len(batch), reason="publish")
        if stopping:
            return
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            pass
