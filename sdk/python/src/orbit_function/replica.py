"""A function replica: everything a Python function needs besides its maths.

It does what the Rust runtime does (docs/contract.md): connect, make sure the streams and the
function catalog exist, write the descriptor to the catalog, start the NATS micro service that
carries it in `$SRV.INFO` and answers sync calls on `orbit.fn.<name>`, pull jobs from the
durable consumer `fn-<name>` shared by every replica, check each job again, run them, publish
the results, then ack. The order is what makes "nothing lost" hold: a message is acked only
after JetStream confirmed every result it led to, so a crash at any point leaves it unacked and
JetStream redelivers it; the results' message ids are derived from the job ids, so a second
result of a redelivered job is dropped as a duplicate (and every sink is keyed on the job id).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import nats.errors
import nats.js.errors
from nats.js import api
from nats.micro import add_service
from nats.micro.request import Request

from . import logs, metrics
from .config import Config, StreamSettings
from .connection import connect
from .contract import (
    BUNDLE_SIZE_HEADER,
    CODE_BAD_REQUEST,
    CODE_JOB_FAILED,
    CODE_NOT_FOUND,
    CODE_UNAVAILABLE,
    DEADLETTER_REASON_HEADER,
    DEADLETTER_STREAM,
    DESCRIPTOR_METADATA_KEY,
    DIGEST_METADATA_KEY,
    ENDPOINT_NAME,
    FUNCTIONS_BUCKET,
    JOB_ID_HEADER,
    JOBS_STREAM,
    LOGS_STREAM,
    MAX_RESULT_BUNDLE,
    MAX_RESULT_BUNDLE_BYTES,
    MESSAGE_ID_HEADER,
    RESULT_SCHEMA_VERSION,
    RESULTS_STREAM,
    STATS_DATA_KEY,
    TRACEPARENT,
    FieldError,
    JobFailure,
    bundle_id,
    consumer_name,
    deadletter_subject,
    dumps,
    function_subject,
    job_subject,
    loads,
    new_job_id,
    parse_job_id,
    parse_timestamp,
    parse_traceparent,
    replay_suffix,
    result_subject,
    service_version,
    split_bundle,
    started_subject,
    timestamp,
    trace_id,
)
from .declaration import Function, Job, encode_tensor
from .metrics import REGISTRY
from .publish import Publisher, _Direct, send_now

log = logging.getLogger("orbit_function.replica")

# A function whose calls take less than this on average runs on the event loop; a slower one
# runs on a worker thread, so NATS traffic (heartbeats, sync calls) never waits for it.
INLINE_BELOW = 0.002
BACKOFF_MAX = 10.0


def backoff(attempt: int) -> float:
    return min(BACKOFF_MAX, 0.1 * (2 ** min(attempt, 10)))


@dataclass
class Timed:
    count: int = 0
    ns: int = 0

    def add(self, ms: float) -> None:
        self.count += 1
        self.ns += int(max(ms, 0.0) * 1e6)


@dataclass
class VersionStats:
    """Per-version counters reported in `$SRV.STATS` (Triton's statistics terms)."""

    success: Timed = field(default_factory=Timed)
    fail: Timed = field(default_factory=Timed)
    queue: Timed = field(default_factory=Timed)
    compute: Timed = field(default_factory=Timed)
    inference_count: int = 0
    execution_count: float = 0.0
    last_inference: int = 0

    def document(self) -> dict[str, Any]:
        timed = lambda t: {"count": t.count, "ns": t.ns}  # noqa: E731
        return {
            "success": timed(self.success),
            "fail": timed(self.fail),
            "queue": timed(self.queue),
            "compute": timed(self.compute),
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "last_inference": self.last_inference,
        }


@dataclass
class Delivery:
    """A job read off the stream: its document, its delivery attempt and its submit time."""

    document: dict[str, Any]
    attempt: int
    submitted_ns: int


@dataclass
class Carrier:
    """A message of a batch and the jobs it carried (`deliveries[start:end]`)."""

    message: Any
    start: int
    end: int
    bundle: bool
    replay: Optional[str]


@dataclass
class Publication:
    carrier: int
    subject: str
    msg_id: str
    payload: bytes
    job_id: Optional[str] = None
    documents: Optional[int] = None
    # A lone result's trace context, also in its `traceparent` header (a bundle's results each
    # carry their own in the document).
    traceparent: Optional[str] = None

    def headers(self) -> dict[str, str]:
        headers = {MESSAGE_ID_HEADER: self.msg_id}
        if self.job_id is not None:
            headers[JOB_ID_HEADER] = self.job_id
        if self.documents is not None:
            headers[BUNDLE_SIZE_HEADER] = str(self.documents)
        if self.traceparent is not None:
            headers[TRACEPARENT] = self.traceparent
        return headers


class Replica:
    """One running replica of `function`."""

    def __init__(self, function: Function, config: Config):
        self.function = function
        self.config = config
        self.name = function.name
        self.stats: dict[str, VersionStats] = {}
        self.stop = asyncio.Event()
        self._compute = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compute")
        self._call_seconds = 0.0
        self._sync_tasks: set[asyncio.Task] = set()
        self._sync_waiting: collections.deque[Request] = collections.deque()

    # -- lifecycle --------------------------------------------------------------------------

    async def serve(self) -> None:
        """Runs until `self.stop` is set, then drains: stops pulling, finishes and acks the
        batches in hand, answers the sync calls in flight."""
        metrics_server = await metrics.serve(self.config.metrics_addr)
        self.nc = await connect(self.config.nats_url, self.config.worker_id)
        shipping = asyncio.create_task(logs.ship(self.nc, self.name, self.config.worker_id, self.stop))
        try:
            self.js = self.nc.jetstream()
            self.publisher = await Publisher(self.nc).start()
            await ensure_streams(self.js, StreamSettings.from_env())
            await register(self.js, self.function)
            log.info(
                "function starting",
                extra={"function": self.name, "version": self.function.version, "worker_id": self.config.worker_id},
            )
            service = await self._start_service()
            jobs = asyncio.create_task(self._job_loop())
            await self.stop.wait()
            await jobs
            await service.stop()
            while self._sync_tasks or self._sync_waiting:
                await asyncio.gather(*list(self._sync_tasks), return_exceptions=True)
            log.info("function stopped", extra={"function": self.name})
        finally:
            self.stop.set()
            await shipping
            if metrics_server is not None:
                metrics_server.close()
            try:
                await self.nc.flush(timeout=5)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            await self.nc.close()
            self._compute.shutdown(wait=True)

    def stop_on_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled, sig)

    def _signalled(self, sig: signal.Signals) -> None:
        log.info("shutdown requested; draining", extra={"signal": sig.name})
        self.stop.set()

    # -- running jobs -----------------------------------------------------------------------

    async def _run(self, jobs: list[Job]) -> tuple[list[Union[Any, JobFailure]], int, int]:
        """Runs `jobs`; their outputs and the start and finish times (ns)."""
        started = time.time_ns()
        if not jobs:
            return [], started, started
        clock = time.perf_counter()
        if self._call_seconds < INLINE_BELOW:
            outputs = self.function.run(jobs)
        else:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._compute, self.function.run, jobs)
        elapsed = time.perf_counter() - clock
        self._call_seconds = 0.8 * self._call_seconds + 0.2 * elapsed
        REGISTRY.counter("orbit_executions_total", function=self.name)
        REGISTRY.counter("orbit_inferences_total", len(jobs), function=self.name)
        REGISTRY.observe("orbit_batch_size", len(jobs), function=self.name)
        return outputs, started, time.time_ns()

    def _event(
        self,
        document: dict[str, Any],
        job_id: str,
        version: str,
        outcome: Union[Any, JobFailure],
        source: str,
        submitted_ns: int,
        started_ns: int,
        finished_ns: int,
        attempt: int,
        batch_size: int,
        recorded_input: Any,
        submitted_text: Optional[str] = None,
        traceparent: Optional[str] = None,
    ) -> dict[str, Any]:
        """A result event, its fields in the Rust contract's order; counted in metrics and
        `$SRV.STATS`. `traceparent` is the job's trace context, carried on unchanged: this
        replica records no spans, so the stores' spans join the caller's trace directly."""
        failed = isinstance(outcome, JobFailure)
        queue_ms = max(0, started_ns - submitted_ns) / 1e6
        compute_ms = max(0, finished_ns - started_ns) / 1e6
        event = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "job_id": job_id,
            "function": self.name,
            "function_version": version,
            "status": "failed" if failed else "succeeded",
            "output": None if failed else outcome,
            "error": outcome.document() if failed else None,
            "input": recorded_input,
            "metadata": document.get("metadata") or {},
            "parameters": document.get("parameters") or {},
            "source": source,
            "timings": {
                "submitted_at": submitted_text or timestamp(submitted_ns),
                "started_at": timestamp(started_ns),
                "finished_at": timestamp(finished_ns),
                "queue_ms": queue_ms,
                "compute_ms": compute_ms,
            },
            "worker_id": self.config.worker_id,
            "attempt": attempt,
            "batch_size": batch_size,
        }
        if traceparent is not None:
            event["traceparent"] = traceparent
        status = event["status"]
        REGISTRY.counter("orbit_jobs_total", function=self.name, status=status, source=source)
        REGISTRY.observe("orbit_job_queue_seconds", queue_ms / 1000, function=self.name)
        REGISTRY.observe("orbit_job_compute_seconds", compute_ms / 1000, function=self.name)
        stats = self.stats.setdefault(version, VersionStats())
        (stats.fail if failed else stats.success).add(queue_ms + compute_ms)
        stats.queue.add(queue_ms)
        stats.compute.add(compute_ms)
        stats.inference_count += 1
        if batch_size > 0:
            stats.execution_count += 1.0 / batch_size
        stats.last_inference = max(stats.last_inference, finished_ns // 1_000_000)
        if failed:
            fields = {"job_id": job_id, "function": self.name, "code": outcome.code, "reason": outcome.message, "attempt": attempt}
            if traceparent is not None:
                # The job's trace id beside its job id, so each finds the other.
                fields["trace_id"] = trace_id(traceparent)
            log.warning("job failed", extra=fields)
        return event

    async def _job_loop(self) -> None:
        config = self.config
        await self.js.add_consumer(
            JOBS_STREAM,
            api.ConsumerConfig(
                name=consumer_name(self.name),
                durable_name=consumer_name(self.name),
                filter_subject=job_subject(self.name),
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=config.ack_wait,
                max_deliver=config.max_deliver,
                max_ack_pending=config.max_ack_pending,
            ),
        )
        subscription = await self.js.pull_subscribe_bind(consumer_name(self.name), JOBS_STREAM)
        pending = asyncio.create_task(self._report_pending())
        inflight: set[asyncio.Task] = set()
        failures = 0
        # Messages range from one job to a bundle of hundreds: a fetch asks for as many as
        # ORBIT_FETCH_MAX_BYTES holds at the sizes seen so far, so a batch in hand stays
        # about that size (nats-py's fetch takes a count, not bytes).
        message_bytes = 1024.0
        while not self.stop.is_set():
            while len(inflight) >= config.inflight_batches:
                _, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            count = max(1, min(config.fetch_batch, int(config.fetch_max_bytes / message_bytes)))
            try:
                batch = await subscription.fetch(count, timeout=1)
                failures = 0
                if batch:
                    size = sum(len(m.data) for m in batch) / len(batch)
                    message_bytes = 0.5 * message_bytes + 0.5 * max(size, 64.0)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except Exception as err:  # noqa: BLE001 - the loop outlives a broken fetch
                failures += 1
                pause = backoff(failures)
                log.warning("fetching jobs failed; retrying", extra={"error": str(err), "pause": pause})
                try:
                    await asyncio.wait_for(self.stop.wait(), pause)
                except asyncio.TimeoutError:
                    pass
                continue
            if batch:
                inflight.add(asyncio.create_task(self._process_batch(batch)))
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
        pending.cancel()
        try:
            await subscription.unsubscribe()
        except Exception:  # noqa: BLE001 - the connection may already be going
            pass
        log.info("job loop drained", extra={"function": self.name})

    async def _report_pending(self) -> None:
        """`orbit_jobs_pending`: the function's backlog, what an autoscaler scales on."""
        while True:
            try:
                info = await self.js.consumer_info(JOBS_STREAM, consumer_name(self.name))
                REGISTRY.gauge("orbit_jobs_pending", info.num_pending or 0, function=self.name)
            except Exception:  # noqa: BLE001 - a missed sample is harmless
                pass
            await asyncio.sleep(2)

    async def _unpack(self, batch: list[Any]) -> tuple[list[Carrier], list[Delivery]]:
        carriers: list[Carrier] = []
        deliveries: list[Delivery] = []
        for message in batch:
            try:
                attempt = max(1, message.metadata.num_delivered)
            except Exception:  # noqa: BLE001 - not a JetStream message: first delivery
                attempt = 1
            if attempt > 1:
                REGISTRY.counter("orbit_job_redeliveries_total", function=self.name)
            try:
                bundled, documents = split_bundle(message.data)
                submitted = []
                for index, document in enumerate(documents):
                    problem, submitted_ns = read_envelope(document)
                    if problem:
                        raise ValueError(
                            f"element {index} is not a job envelope: {problem}" if bundled else f"not a job envelope: {problem}"
                        )
                    submitted.append(submitted_ns)
            except ValueError as err:
                await self._dead_letter(message, str(err))
                continue
            if not documents:
                await self._dead_letter(message, "an empty bundle")
                continue
            headers = message.headers or {}
            start = len(deliveries)
            deliveries.extend(Delivery(d, attempt, ns) for d, ns in zip(documents, submitted))
            carriers.append(Carrier(message, start, len(deliveries), bundled, replay_suffix(headers.get(MESSAGE_ID_HEADER))))
        return carriers, deliveries

    async def _process_batch(self, batch: list[Any]) -> None:
        try:
            await self._process(batch)
        except Exception:  # noqa: BLE001 - its messages stay unacked and are redelivered
            log.exception("a batch failed; its messages will be redelivered")

    async def _process(self, batch: list[Any]) -> None:
        carriers, deliveries = await self._unpack(batch)
        if not deliveries:
            return
        REGISTRY.gauge("orbit_jobs_inflight", len(deliveries), add=True, function=self.name)
        try:
            await self._finish(carriers, deliveries)
        finally:
            REGISTRY.gauge("orbit_jobs_inflight", -len(deliveries), add=True, function=self.name)

    async def _finish(self, carriers: list[Carrier], deliveries: list[Delivery]) -> None:
        config = self.config
        valid: list[Job] = []
        verdicts: list[Union[Job, JobFailure]] = []
        for delivery in deliveries:
            document = delivery.document
            if delivery.attempt >= config.max_deliver:
                reason = f"delivered {delivery.attempt} times without finishing"
                try:
                    await self._store_dead_letter(document["job_id"], dumps(document), reason)
                except Exception as err:  # noqa: BLE001
                    log.warning("dead-letter copy not stored", extra={"job_id": document["job_id"], "error": str(err)})
                verdicts.append(JobFailure.too_many_deliveries(delivery.attempt))
            elif document["model_name"] != self.name:
                verdicts.append(JobFailure.wrong_function(document["model_name"], self.name))
            else:
                try:
                    job = self.function.prepare(document, document["job_id"])
                    valid.append(job)
                    verdicts.append(job)
                except FieldError as err:
                    verdicts.append(JobFailure.invalid_input(err))
        notice = asyncio.create_task(self._announce_after([d.document["job_id"] for d in deliveries]))
        heartbeat = asyncio.create_task(self._keep_alive(carriers))
        try:
            outputs, started_ns, finished_ns = await self._run(valid)
        finally:
            notice.cancel()
            heartbeat.cancel()
        outputs_iter = iter(outputs)
        events: list[dict[str, Any]] = []
        default_version = self.function.version
        for delivery, verdict in zip(deliveries, verdicts):
            document = delivery.document
            if isinstance(verdict, Job):
                outcome, version, size = next(outputs_iter, JobFailure.no_output()), verdict.version, len(valid)
            else:
                outcome, version, size = verdict, document.get("model_version") or default_version, 0
            submitted_text = document["submitted_at"]
            inputs = document.get("inputs")
            events.append(
                self._event(
                    document,
                    document["job_id"],
                    version,
                    outcome,
                    "async",
                    delivery.submitted_ns,
                    started_ns,
                    finished_ns,
                    delivery.attempt,
                    size,
                    {"tensors": inputs} if inputs else document.get("data", []),
                    submitted_text,
                    parse_traceparent(document.get(TRACEPARENT)),
                )
            )
        publications = self._publications(carriers, events)
        await self._store_then_ack(carriers, publications)

    def _publications(self, carriers: list[Carrier], events: list[dict[str, Any]]) -> list[Publication]:
        subject = result_subject(self.name)
        publications: list[Publication] = []
        for index, carrier in enumerate(carriers):
            span = events[carrier.start : carrier.end]
            first = len(publications)
            if not carrier.bundle:
                for event in span:
                    payload = self._encode(event)
                    job_id, traceparent = event["job_id"], event.get(TRACEPARENT)
                    publications.append(Publication(index, subject, job_id, payload, job_id=job_id, traceparent=traceparent))
            else:
                encoded = [self._encode(event) for event in span]
                start, size = 0, 2
                for position, document in enumerate(encoded):
                    grown = size + len(document) + 1
                    if position > start and (position - start >= MAX_RESULT_BUNDLE or grown > MAX_RESULT_BUNDLE_BYTES):
                        publications.append(self._bundle(index, subject, span, encoded, start, position))
                        start, size = position, 2
                    size += len(document) + 1
                publications.append(self._bundle(index, subject, span, encoded, start, len(encoded)))
            if carrier.replay:
                for publication in publications[first:]:
                    publication.msg_id += carrier.replay
        return publications

    def _encode(self, event: dict[str, Any]) -> bytes:
        try:
            return dumps(event)
        except TypeError as err:
            # An output JSON cannot carry: the job fails rather than the batch.
            failure = JobFailure.function_error(f"the output is not JSON: {err}")
            event = dict(event, status="failed", output=None, error=failure.document())
            return dumps(event)

    @staticmethod
    def _bundle(carrier: int, subject: str, span: list, encoded: list[bytes], start: int, end: int) -> Publication:
        payload = b"[" + b",".join(encoded[start:end]) + b"]"
        return Publication(carrier, subject, bundle_id(span[start]["job_id"], end - start), payload, documents=end - start)

    async def _store_then_ack(self, carriers: list[Carrier], publications: list[Publication]) -> None:
        """Publishes every result (all at once, then the acks awaited together) and acks each
        job message once every result it led to is confirmed. Results JetStream cannot take
        are published again with backoff, the jobs kept alive meanwhile: a store outage
        delays jobs, it never fails or drops them. Only a shutdown gives them back (nak)."""
        waiting = [0] * len(carriers)
        for publication in publications:
            waiting[publication.carrier] += 1
        unconfirmed = list(range(len(publications)))
        attempt = 0
        while True:
            results = await asyncio.gather(
                *(self.publisher.publish(p.subject, p.payload, p.headers()) for p in (publications[i] for i in unconfirmed)),
                return_exceptions=True,
            )
            failed: list[int] = []
            last_error = ""
            for index, outcome in zip(unconfirmed, results):
                carrier = publications[index].carrier
                if isinstance(outcome, BaseException):
                    failed.append(index)
                    last_error = str(outcome) or type(outcome).__name__
                    continue
                waiting[carrier] -= 1
                if waiting[carrier] == 0:
                    try:
                        await carriers[carrier].message.ack()
                    except Exception as err:  # noqa: BLE001
                        log.warning("ack failed; the jobs will be redelivered and deduplicated", extra={"error": str(err)})
            if not failed:
                return
            attempt += 1
            pause = backoff(attempt)
            stalled = sorted({publications[i].carrier for i in failed})
            if self.stop.is_set():
                for carrier in stalled:
                    try:
                        await carriers[carrier].message.nak(delay=pause)
                    except Exception:  # noqa: BLE001
                        pass
                return
            REGISTRY.counter("orbit_result_publish_retries_total", len(failed))
            log.warning("results not stored; retrying", extra={"messages": len(failed), "round": attempt, "error": last_error})
            for carrier in stalled:
                try:
                    await carriers[carrier].message.in_progress()
                except Exception:  # noqa: BLE001
                    pass
            try:
                await asyncio.wait_for(self.stop.wait(), pause)
            except asyncio.TimeoutError:
                pass
            unconfirmed = failed

    async def _keep_alive(self, carriers: list[Carrier]) -> None:
        """Progress acks while a batch runs, so a long batch is not redelivered mid-flight."""
        while True:
            await asyncio.sleep(self.config.ack_wait / 3)
            for carrier in carriers:
                try:
                    await carrier.message.in_progress()
                except Exception:  # noqa: BLE001
                    pass

    async def _announce_after(self, job_ids: list[str]) -> None:
        """The `running` notice of a batch still at work after the notice's delay (a batch
        that ends sooner goes from `queued` straight to its result)."""
        await asyncio.sleep(self.config.started_notice_after)
        try:
            await self.nc.publish(started_subject(self.name), dumps(job_ids))
        except Exception:  # noqa: BLE001 - best effort
            pass

    async def _dead_letter(self, message: Any, reason: str) -> None:
        """Keeps a message that is not a job in DEADLETTER and terminates it."""
        headers = message.headers or {}
        job_id = headers.get(JOB_ID_HEADER) or headers.get(MESSAGE_ID_HEADER)
        try:
            await self._store_dead_letter(job_id, message.data, reason)
            log.error("message dead-lettered", extra={"function": self.name, "job_id": job_id, "reason": reason})
            await message.term()
        except Exception as err:  # noqa: BLE001
            log.error("dead letter not stored; leaving for redelivery", extra={"error": str(err)})
            try:
                await message.nak(delay=5)
            except Exception:  # noqa: BLE001
                pass

    async def _store_dead_letter(self, job_id: Optional[str], payload: bytes, reason: str) -> None:
        headers = {DEADLETTER_REASON_HEADER: "".join(" " if not c.isprintable() else c for c in reason)[:512]}
        if job_id:
            headers[JOB_ID_HEADER] = job_id
        await self.publisher.publish(deadletter_subject(self.name), payload, headers)
        REGISTRY.counter("orbit_deadletters_total", function=self.name)

    # -- the sync door ----------------------------------------------------------------------

    async def _start_service(self) -> Any:
        descriptor = self.function.descriptor_json().decode()
        service = await add_service(
            self.nc,
            name=self.name,
            version=service_version(self.function.version),
            description=self.function.description,
            metadata={DIGEST_METADATA_KEY: self.function.digest()},
            stats_handler=lambda _endpoint: {STATS_DATA_KEY: {v: s.document() for v, s in sorted(self.stats.items())}},
        )
        await service.add_endpoint(
            name=ENDPOINT_NAME,
            subject=function_subject(self.name),
            handler=self._on_call,
            metadata={DESCRIPTOR_METADATA_KEY: descriptor},
        )
        self._dispatch_directly(service)
        return service

    async def _on_call(self, request: Request) -> None:
        # Calls run side by side: the micro handler would otherwise take one at a time.
        self._admit(request)

    def _admit(self, request: Request) -> None:
        """Starts a call, or queues it while ORBIT_SYNC_CONCURRENCY calls are in flight."""
        if len(self._sync_tasks) >= self.config.sync_concurrency:
            self._sync_waiting.append(request)
            return
        task = asyncio.create_task(self._answer(request))
        self._sync_tasks.add(task)
        task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task) -> None:
        self._sync_tasks.discard(task)
        if self._sync_waiting:
            self._admit(self._sync_waiting.popleft())

    def _dispatch_directly(self, service: Any) -> None:
        """Starts each call's task from nats-py's read loop (see `publish._Direct`) instead of
        through the endpoint's queue and handler task: one turn of the event loop less per
        call. The endpoint's request count in `$SRV.STATS` is kept here instead. Without the
        attributes (another nats-py), the handler above serves every call."""
        endpoints = getattr(service, "_endpoints", None)
        if not endpoints or not hasattr(endpoints[0], "_subscription"):
            return
        endpoint = endpoints[0]
        subscription = endpoint._subscription
        if subscription is None or not hasattr(subscription, "_future"):
            return

        def deliver(message: Any) -> None:
            endpoint._num_requests += 1
            self._admit(Request(message))

        subscription._future = _Direct(deliver)

    async def _answer(self, request: Request) -> None:
        try:
            code, body = await self._call(request)
        except Exception as err:  # noqa: BLE001 - every call gets an answer
            log.exception("sync call failed")
            code, body = 500, f"internal error: {err}"
        try:
            if code == 200:
                await request.respond(body)
            else:
                await request.respond_error(str(code), body if isinstance(body, str) else body.decode())
            send_now(self.nc)
        except Exception as err:  # noqa: BLE001
            log.debug("reply not sent (caller gone?)", extra={"error": str(err)})

    async def _call(self, request: Request) -> tuple[int, Union[bytes, str]]:
        submitted_ns = time.time_ns()
        try:
            job_id, document, job = self._parse_call(request)
        except FieldError as err:
            return (CODE_NOT_FOUND if err.field == "model_version" else CODE_BAD_REQUEST), str(err)
        outputs, started_ns, finished_ns = await self._run([job])
        if job.series is not None:
            recorded: Any = job.series
        else:
            recorded = {"tensors": [encode_tensor(n, a) for n, a in job.tensors.items()]}
        # The caller's trace context comes in the request's header and goes on in the record's.
        traceparent = parse_traceparent((request.headers or {}).get(TRACEPARENT))
        event = self._event(
            document, job_id, job.version, outputs[0], "sync", submitted_ns, started_ns, finished_ns, 1, 1, recorded, None, traceparent
        )
        payload = self._encode(event)
        headers = {MESSAGE_ID_HEADER: job_id, JOB_ID_HEADER: job_id}
        if traceparent is not None:
            headers[TRACEPARENT] = traceparent
        subject = result_subject(self.name)
        try:
            if self.config.sync_record_acked:
                await self.publisher.publish(subject, payload, headers)
            else:
                await self.nc.publish(subject, payload, headers=headers)
                asyncio.create_task(self._confirm_record(subject, payload, headers))
        except Exception as err:  # noqa: BLE001
            log.warning("sync result not recorded", extra={"job_id": job_id, "error": str(err)})
            return CODE_UNAVAILABLE, f"result could not be recorded: {err}"
        if event["status"] == "failed":
            failure = event["error"]
            field = failure.get("field")
            return CODE_JOB_FAILED, f"{field}: {failure['message']}" if field else failure["message"]
        reply = {k: event[k] for k in ("job_id", "function", "function_version", "status", "output", "error", "timings", "worker_id")}
        return 200, dumps(reply)

    def _parse_call(self, request: Request) -> tuple[str, dict[str, Any], Job]:
        headers = request.headers or {}
        job_id = parse_job_id(headers[JOB_ID_HEADER], JOB_ID_HEADER) if headers.get(JOB_ID_HEADER) else new_job_id()
        try:
            document = loads(request.data)
        except Exception as err:  # noqa: BLE001 - orjson's error names the position
            raise FieldError("body", f"malformed JSON: {err}") from None
        if not isinstance(document, dict):
            raise FieldError("body", "must be a JSON object")
        name = document.get("model_name")
        if name is not None and name != self.name:
            raise FieldError("model_name", f"is '{name}' but this endpoint serves '{self.name}'")
        return job_id, document, self.function.prepare(document, job_id)

    async def _confirm_record(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """With `ORBIT_SYNC_RECORD=sent` the reply leaves before JetStream's ack: publish the
        record again (same message id, so stored once) until it is acknowledged."""
        for attempt in range(1, 13):
            try:
                await self.publisher.publish(subject, payload, headers)
                return
            except Exception as err:  # noqa: BLE001
                REGISTRY.counter("orbit_sync_record_retries_total")
                log.warning("sync record not acknowledged; publishing again", extra={"error": str(err), "attempt": attempt})
                await asyncio.sleep(backoff(attempt))
        REGISTRY.counter("orbit_sync_records_lost_total")
        log.error("sync record not stored; the caller has its reply, the sinks will not see it")


def read_envelope(document: Any) -> tuple[Optional[str], int]:
    """Why `document` is not a job envelope (None when it is one), and its submit time in
    nanoseconds since the epoch."""
    if not isinstance(document, dict):
        return "not a JSON object", 0
    for name in ("job_id", "model_name", "submitted_at"):
        if not isinstance(document.get(name), str):
            return f"missing field `{name}`", 0
    try:
        parse_job_id(document["job_id"], "job_id")
        submitted_ns = parse_timestamp(document["submitted_at"])
    except (FieldError, ValueError) as err:
        return str(err), 0
    for name, kind in (("data", list), ("inputs", list), ("metadata", dict), ("parameters", dict)):
        if name in document and not isinstance(document[name], kind):
            return f"`{name}` has the wrong type", 0
    for name in ("model_version", TRACEPARENT):
        if name in document and not isinstance(document[name], (str, type(None))):
            return f"`{name}` has the wrong type", 0
    return None, submitted_ns


async def ensure_streams(js: Any, settings: StreamSettings) -> None:
    """JOBS, RESULTS, DEADLETTER and LOGS with the Rust runtime's configuration, created by
    whichever process needs them first (creation is idempotent)."""
    configs = [
        api.StreamConfig(
            name=JOBS_STREAM, subjects=["orbit.jobs.*"], retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.NEW, max_msgs=settings.jobs_max_msgs,
            max_bytes=settings.jobs_max_bytes, duplicate_window=settings.duplicate_window, num_replicas=settings.replicas,
        ),
        api.StreamConfig(
            name=RESULTS_STREAM, subjects=["orbit.results.*"], retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD, max_age=settings.results_max_age,
            max_bytes=settings.results_max_bytes, duplicate_window=settings.duplicate_window, num_replicas=settings.replicas,
        ),
        api.StreamConfig(
            name=DEADLETTER_STREAM, subjects=["orbit.deadletter.*"], retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, max_age=30 * 24 * 3600.0, num_replicas=settings.replicas,
        ),
        api.StreamConfig(
            name=LOGS_STREAM, subjects=["orbit.logs.*"], retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE, discard=api.DiscardPolicy.OLD, max_bytes=settings.logs_max_bytes,
            max_age=settings.logs_max_age, num_replicas=settings.replicas,
        ),
    ]
    for config in configs:
        for attempt in range(1, 61):
            try:
                await js.stream_info(config.name)
                break
            except nats.js.errors.NotFoundError:
                try:
                    await js.add_stream(config)
                    break
                except nats.js.errors.BadRequestError:
                    break  # another process created it meanwhile
            except Exception as err:  # noqa: BLE001 - JetStream may still be starting
                if attempt == 60:
                    raise
                log.warning("stream not reachable yet; retrying", extra={"stream": config.name, "error": str(err)})
                await asyncio.sleep(1)


async def register(js: Any, function: Function) -> None:
    """Writes the descriptor to the function catalog under the function's name: the gateway
    accepts jobs for a deployed function while none of its replicas runs."""
    try:
        bucket = await js.key_value(FUNCTIONS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        try:
            bucket = await js.create_key_value(
                api.KeyValueConfig(
                    bucket=FUNCTIONS_BUCKET, description="Orbit function descriptors, one per function",
                    history=1, storage=api.StorageType.FILE, replicas=StreamSettings.from_env().replicas,
                )
            )
        except Exception:  # noqa: BLE001 - another process created it meanwhile
            bucket = await js.key_value(FUNCTIONS_BUCKET)
    await bucket.put(function.name, function.descriptor_json())
