"""Orbit's wire contract, as the Rust crate `orbit-contract` defines it (docs/contract.md).

Subjects, headers, identifiers, timestamps and the result documents a replica publishes. Every
other module builds names and documents through here, so this SDK and the Rust runtime stay
byte-compatible where consumers compare bytes (message ids, digests, field names).
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

import orjson

JOBS_STREAM = "JOBS"
RESULTS_STREAM = "RESULTS"
DEADLETTER_STREAM = "DEADLETTER"
LOGS_STREAM = "LOGS"
FUNCTIONS_BUCKET = "orbit_functions"

JOB_ID_HEADER = "Orbit-Job-Id"
BUNDLE_SIZE_HEADER = "Orbit-Bundle-Size"
DEADLETTER_REASON_HEADER = "Orbit-Deadletter-Reason"
MESSAGE_ID_HEADER = "Nats-Msg-Id"
# The W3C trace context: a header of a lone job or result message and of a sync call, and a
# field of the job envelope and the result event.
TRACEPARENT = "traceparent"

DESCRIPTOR_METADATA_KEY = "orbit.descriptor"
DIGEST_METADATA_KEY = "orbit.digest"
ENDPOINT_NAME = "run"
STATS_DATA_KEY = "versions"

RESULT_SCHEMA_VERSION = 1
MAX_SERIES_POINTS = 100_000
MAX_NAME_LEN = 64
MAX_JOB_ID_LEN = 128
# A bundle of results stays under a NATS server's default 1 MB max_payload.
MAX_RESULT_BUNDLE = 1000
MAX_RESULT_BUNDLE_BYTES = 768 * 1024
REPLAY_MARK = ":redrive:"

# NATS service error codes, HTTP-like so the gateway maps them straight through.
CODE_BAD_REQUEST = 400
CODE_NOT_FOUND = 404
CODE_JOB_FAILED = 422
CODE_UNAVAILABLE = 503

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_VERSION = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
_JOB_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^([0-9A-Fa-f]{2})-([0-9A-Fa-f]{32})-([0-9A-Fa-f]{16})-([0-9A-Fa-f]{2})(-.*)?$")


def job_subject(function: str) -> str:
    return f"orbit.jobs.{function}"


def function_subject(function: str) -> str:
    return f"orbit.fn.{function}"


def result_subject(function: str) -> str:
    return f"orbit.results.{function}"


def deadletter_subject(function: str) -> str:
    return f"orbit.deadletter.{function}"


def started_subject(function: str) -> str:
    return f"orbit.events.started.{function}"


def log_subject(service: str) -> str:
    token = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in service)
    return f"orbit.logs.{token}"


def consumer_name(function: str) -> str:
    """The durable pull consumer on JOBS shared by every replica of `function`."""
    return f"fn-{function}"


def is_name(name: str) -> bool:
    return bool(_NAME.match(name))


def is_version(version: str) -> bool:
    return bool(_VERSION.match(version))


def replay_suffix(message_id: Optional[str]) -> Optional[str]:
    """The `:redrive:N` suffix of a replayed job's message id, carried onto its results' ids."""
    if not message_id:
        return None
    at = message_id.find(REPLAY_MARK)
    return message_id[at:] if at >= 0 else None


def bundle_id(first_id: str, documents: int) -> str:
    """A bundle's `Nats-Msg-Id`: its first document's id and how many it holds."""
    return f"{first_id}+{documents}"


@dataclass(frozen=True)
class FieldError(Exception):
    """Bad input, naming the field at fault (`data[3]`, `parameters.window`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class JobFailure(Exception):
    """Why a job failed; `code` is stable and machine-readable (`invalid_input`,
    `function_error`, ...). A function raises it to fail a job with its own code."""

    code: str
    message: str
    field: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out

    @staticmethod
    def function_error(message: str) -> "JobFailure":
        return JobFailure("function_error", message)

    @staticmethod
    def invalid_input(error: FieldError) -> "JobFailure":
        return JobFailure("invalid_input", error.message, error.field)

    @staticmethod
    def wrong_function(model: str, function: str) -> "JobFailure":
        return JobFailure("invalid_input", f"a {model} job sent to {function}", "model_name")

    @staticmethod
    def no_output() -> "JobFailure":
        return JobFailure.function_error("the function returned no output for this job")

    @staticmethod
    def too_many_deliveries(attempt: int) -> "JobFailure":
        return JobFailure(
            "too_many_deliveries",
            f"delivered {attempt} times without finishing (a worker crashed or stalled on it "
            "each time); not run again",
        )


def parse_job_id(value: str, field: str) -> str:
    if not value or len(value) > MAX_JOB_ID_LEN:
        raise FieldError(field, f"must be 1 to {MAX_JOB_ID_LEN} characters")
    if not _JOB_ID.match(value):
        raise FieldError(field, "may contain only letters, digits, '.', '_', ':' and '-'")
    return value


def parse_traceparent(value: Any) -> Optional[str]:
    """A W3C trace context (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`) as the Rust
    runtime hands it on (`traces::TraceParent`): version `00`, lowercase, only the sampled flag
    kept. None for anything else: a malformed context fails no job, it is just not carried."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip())
    if not match:
        return None
    version, trace, span, flags, rest = match.groups()
    if version.lower() == "ff" or (version == "00" and rest is not None):
        return None
    if int(trace, 16) == 0 or int(span, 16) == 0:
        return None
    return f"00-{trace.lower()}-{span.lower()}-{int(flags, 16) & 1:02x}"


def trace_id(traceparent: Optional[str]) -> Optional[str]:
    """The trace id (32 hex digits) of a context `parse_traceparent` gave: what a trace viewer
    finds the trace by, and what a job's log lines carry beside its job id."""
    return traceparent[3:35] if traceparent else None


_random = random.SystemRandom()


def new_job_id() -> str:
    """A time-ordered UUIDv7, as the gateway mints them: 48 bits of milliseconds, the version,
    74 random bits, the variant."""
    millis = time.time_ns() // 1_000_000
    bits = _random.getrandbits(74)
    value = (millis << 80) | (0x7 << 76) | ((bits >> 62) << 64) | (0b10 << 62) | (bits & ((1 << 62) - 1))
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_second = (-1, "")


def timestamp(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, as chrono writes a `DateTime<Utc>`."""
    global _second
    seconds, fraction = divmod(ns, 1_000_000_000)
    if _second[0] != seconds:
        _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{_second[1]}.{fraction:09d}Z"


def parse_timestamp(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (any fraction length, any offset)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    whole, fraction, zone = match.groups()
    offset = "+00:00" if zone == "Z" else zone
    seconds = datetime.fromisoformat(whole + offset).astimezone(timezone.utc).timestamp()
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return int(seconds) * 1_000_000_000 + nanos


def service_version(version: str) -> str:
    """The NATS micro version of a function version (micro requires semantic versions)."""
    parts = version.split(".")
    if len(parts) == 3 and all(p.isdigit() and p.isascii() for p in parts):
        return version
    if version and version.isascii() and version.isdigit():
        return f"{version.lstrip('0') or '0'}.0.0"
    label = "".join(c if c.isascii() and c.isalnum() else "-" for c in version)
    return f"0.0.0-{label}"


def digest(document_json: bytes) -> str:
    """FNV-1a (64 bits) of a descriptor's JSON: a `$SRV.PING` tells a change without `INFO`."""
    value = 0xCBF29CE484222325
    for byte in document_json:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def dumps(document: Any) -> bytes:
    """Compact JSON as serde_json writes it; numpy arrays and numbers are written as lists and
    numbers. A non-finite float is refused (JSON cannot carry it)."""
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def loads(payload: bytes | str) -> Any:
    return orjson.loads(payload)


def split_bundle(payload: bytes) -> tuple[bool, list[Any]]:
    """The documents of a message: the elements of a bundle (a JSON array), or the payload
    itself. Raises ValueError naming what is wrong."""
    stripped = payload.lstrip()
    if not stripped:
        raise ValueError("the payload is empty")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err}") from None
    if stripped[:1] == b"[":
        return True, value
    return False, [value]


def join_bundle(documents: list[bytes]) -> bytes:
    return b"[" + b",".join(documents) + b"]"
