"""The wire details that must match the Rust contract byte for byte."""

import logging
import re
import time

from orbit_function import contract, logs


def test_fnv1a_digest_matches_the_reference_vectors():
    # FNV-1a 64 of "" and "a" (the algorithm's published test vectors).
    assert contract.digest(b"") == "cbf29ce484222325"
    assert contract.digest(b"a") == "af63dc4c8601ec8c"


def test_service_versions_are_semantic():
    assert contract.service_version("0.1.0") == "0.1.0"
    assert contract.service_version("2") == "2.0.0"
    assert contract.service_version("0") == "0.0.0"
    assert contract.service_version("2024-06") == "0.0.0-2024-06"


def test_timestamps_are_rfc3339_nanoseconds_and_parse_back():
    now = time.time_ns()
    text = contract.timestamp(now)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", text)
    assert contract.parse_timestamp(text) == now
    assert contract.parse_timestamp("2026-01-02T03:04:05Z") == contract.parse_timestamp("2026-01-02T04:04:05.000+01:00")
    assert contract.parse_timestamp("2026-01-02T03:04:05.5Z") % 1_000_000_000 == 500_000_000


def test_job_ids_are_uuid7_and_time_ordered():
    first, second = contract.new_job_id(), contract.new_job_id()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first)
    assert first[:13] <= second[:13]
    assert contract.parse_job_id("order-42:retry.1_a", "Idempotency-Key")


def test_replays_and_bundles_are_named_as_in_rust():
    assert contract.replay_suffix("job-1:redrive:7") == ":redrive:7"
    assert contract.replay_suffix("job-1") is None
    assert contract.bundle_id("job-1", 3) == "job-1+3"
    assert contract.log_subject("a.b c") == "orbit.logs.a_b_c"


def test_bundles_and_single_documents_split():
    assert contract.split_bundle(b' [{"a":1},{"a":2}] ') == (True, [{"a": 1}, {"a": 2}])
    assert contract.split_bundle(b'{"a":1}') == (False, [{"a": 1}])


def test_json_is_compact_and_floats_keep_their_shortest_form():
    # serde_json (ryu) writes the same text: crates/contract's stored-result test expects 1e+308.
    assert contract.dumps({"a": [0.1, 1.0, 1e308]}) == b'{"a":[0.1,1.0,1e+308]}'


def test_trace_contexts_are_carried_as_the_rust_runtime_writes_them():
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert contract.parse_traceparent(header) == header
    assert contract.parse_traceparent(f" {header.upper()} ") == header
    assert contract.parse_traceparent(header[:-2] + "03") == header  # only the sampled flag is kept
    assert contract.parse_traceparent(header[:-2] + "00") == header[:-2] + "00"
    assert contract.trace_id(header) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in [
        None,
        7,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        header + "-extra",
    ]:
        assert contract.parse_traceparent(bad) is None, bad


def test_log_records_carry_the_job_and_its_trace_at_the_top_level():
    handler = logs.BusHandler()
    record = logging.makeLogRecord({"name": "orbit_function.replica", "levelname": "WARNING", "msg": "job failed",
                                    "job_id": "job-7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "code": "invalid_input"})
    handler.emit(record)
    [document] = handler.queue
    assert document["job_id"] == "job-7" and document["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert document["fields"] == {"code": "invalid_input"} and document["level"] == "WARN"
