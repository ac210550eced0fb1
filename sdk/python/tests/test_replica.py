"""A replica against a real NATS server: the contract's promises as the bus sees them."""

import asyncio
import os
import time
import uuid

import nats
import pytest
from nats.js import api

from orbit_function import contract, function
from orbit_function.config import Config
from orbit_function.metrics import REGISTRY
from orbit_function.replica import Replica


def declared(name, delay=0.0):
    @function(
        name=name,
        version="1.0.0",
        description="test function: sums a series",
        parameters={"type": "object", "additionalProperties": False,
                    "properties": {"scale": {"type": "number", "minimum": 0, "default": 1}}},
        example={"data": [1, 2], "parameters": {"scale": 2}},
    )
    def summed(series, parameters):
        if delay:
            time.sleep(delay)
        return {"sum": float(series.sum()) * parameters["scale"]}

    return summed


def envelope(job_id, name, data, parameters=None):
    return {"job_id": job_id, "model_name": name, "data": data, "parameters": parameters or {},
            "metadata": {}, "submitted_at": contract.timestamp(time.time_ns())}


class Running:
    """A replica of a fresh function served in this process, and an admin connection."""

    def __init__(self, url, delay=0.0):
        self.name = f"sdk_test_{uuid.uuid4().hex[:10]}"
        self.url = url
        self.replica = Replica(declared(self.name, delay), Config.from_env(self.name))

    async def __aenter__(self):
        self.task = asyncio.create_task(self.replica.serve())
        self.nc = await nats.connect(
            self.url, user=os.environ["ORBIT_NATS_USER"], password=os.environ["ORBIT_NATS_PASSWORD"]
        )
        self.js = self.nc.jetstream()
        for _ in range(100):
            try:
                await self.nc.request(f"$SRV.PING.{self.name}", b"", timeout=0.2)
                break
            except Exception:
                await asyncio.sleep(0.1)
        self.results = await self.js.subscribe(contract.result_subject(self.name), deliver_policy=api.DeliverPolicy.ALL)
        return self

    async def stop(self):
        self.replica.stop.set()
        await asyncio.wait_for(self.task, 30)

    async def __aexit__(self, *exc):
        if not self.task.done():
            await self.stop()
        try:
            await self.js.delete_consumer(contract.JOBS_STREAM, contract.consumer_name(self.name))
        except Exception:
            pass
        bucket = await self.js.key_value(contract.FUNCTIONS_BUCKET)
        await bucket.purge(self.name)
        await self.nc.close()

    async def next_results(self, count):
        documents = []
        while len(documents) < count:
            message = await self.results.next_msg(timeout=10)
            bundled, docs = contract.split_bundle(message.data)
            documents.extend((message.headers, bundled, doc) for doc in docs)
        return documents


async def test_discovery_sync_calls_and_their_records(nats_env):
    async with Running(nats_env) as run:
        info = contract.loads((await run.nc.request(f"$SRV.INFO.{run.name}", b"", timeout=5)).data)
        [endpoint] = info["endpoints"]
        assert endpoint["subject"] == f"orbit.fn.{run.name}" and endpoint["queue_group"] == "q"
        descriptor = contract.loads(endpoint["metadata"]["orbit.descriptor"])
        assert descriptor["platform"] == "python" and descriptor["name"] == run.name
        assert info["metadata"]["orbit.digest"] == contract.digest(contract.dumps(descriptor))
        catalog = await (await run.js.key_value(contract.FUNCTIONS_BUCKET)).get(run.name)
        assert contract.loads(catalog.value) == descriptor

        # A job id of its own: RESULTS keeps message ids for its duplicate window.
        job_id = f"sdk-sync-{uuid.uuid4().hex}"
        reply = await run.nc.request(f"orbit.fn.{run.name}", b'{"data":[1,2,3],"parameters":{"scale":2}}',
                                     headers={"Orbit-Job-Id": job_id}, timeout=5)
        answer = contract.loads(reply.data)
        assert answer["status"] == "succeeded" and answer["output"] == {"sum": 12.0}
        assert answer["job_id"] == job_id
        bad = await run.nc.request(f"orbit.fn.{run.name}", b'{"data":[1],"parameters":{"scale":-1}}', timeout=5)
        assert bad.headers["Nats-Service-Error-Code"] == "400"
        assert bad.headers["Nats-Service-Error"].startswith("parameters.scale:")
        garbage = await run.nc.request(f"orbit.fn.{run.name}", b"{not json", timeout=5)
        assert garbage.headers["Nats-Service-Error-Code"] == "400"

        [(headers, bundled, record)] = await run.next_results(1)
        assert not bundled and headers["Nats-Msg-Id"] == job_id
        assert record["source"] == "sync" and record["input"] == [1.0, 2.0, 3.0]
        stats = contract.loads((await run.nc.request(f"$SRV.STATS.{run.name}", b"", timeout=5)).data)
        [endpoint] = stats["endpoints"]
        assert endpoint["data"]["versions"]["1.0.0"]["inference_count"] == 1
        assert endpoint["num_requests"] == 3


async def test_jobs_bundles_failures_and_dead_letters(nats_env):
    async with Running(nats_env) as run:
        ids = [f"sdk-{uuid.uuid4().hex}" for _ in range(3)]
        bundle = contract.join_bundle([contract.dumps(envelope(i, run.name, [1.0, 2.0])) for i in ids])
        await run.js.publish(contract.job_subject(run.name), bundle,
                             headers={"Nats-Msg-Id": contract.bundle_id(ids[0], 3), "Orbit-Bundle-Size": "3"})
        lone = f"sdk-{uuid.uuid4().hex}"
        await run.js.publish(contract.job_subject(run.name), contract.dumps(envelope(lone, run.name, [1.0], {"scale": -1})),
                             headers={"Nats-Msg-Id": lone, "Orbit-Job-Id": lone})
        results = await run.next_results(4)
        bundled = [r for r in results if r[1]]
        assert [r[2]["job_id"] for r in bundled] == ids
        assert bundled[0][0]["Nats-Msg-Id"] == f"{ids[0]}+3" and bundled[0][0]["Orbit-Bundle-Size"] == "3"
        assert all(r[2]["status"] == "succeeded" and r[2]["output"] == {"sum": 3.0} and r[2]["batch_size"] == 3 for r in bundled)
        [failed] = [r for r in results if not r[1]]
        assert failed[2]["status"] == "failed" and failed[2]["error"]["field"] == "parameters.scale"

        deadletters = await run.js.subscribe(contract.deadletter_subject(run.name), deliver_policy=api.DeliverPolicy.NEW)
        poison = f"sdk-poison-{uuid.uuid4().hex}"
        await run.js.publish(contract.job_subject(run.name), b'{"not":"a job"}',
                             headers={"Nats-Msg-Id": poison, "Orbit-Job-Id": poison})
        letter = await deadletters.next_msg(timeout=10)
        assert letter.headers["Orbit-Job-Id"] == poison and "not a job envelope" in letter.headers["Orbit-Deadletter-Reason"]
        with pytest.raises(nats.errors.TimeoutError):
            await deadletters.next_msg(timeout=1.5)
        info = await run.js.consumer_info(contract.JOBS_STREAM, contract.consumer_name(run.name))
        assert info.num_ack_pending == 0 and info.num_pending == 0
        text = REGISTRY.render()
        assert f'orbit_jobs_total{{function="{run.name}",status="succeeded",source="async"}} 3' in text
        assert f'orbit_deadletters_total{{function="{run.name}"}} 1' in text


async def test_a_jobs_traceparent_is_carried_to_its_result(nats_env):
    """The replica records no spans: each result carries its job's trace context unchanged, in
    the document and, on a lone result message, in the `traceparent` header, so the stores'
    spans join the caller's trace (as a Rust replica's do with traces off)."""
    def traceparent():
        return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    async with Running(nats_env) as run:
        # A lone job, a bundle with one traced and one untraced job, and a job whose context
        # is malformed (not carried, not failed).
        lone, lone_trace = f"sdk-{uuid.uuid4().hex}", traceparent()
        await run.js.publish(contract.job_subject(run.name),
                             contract.dumps(dict(envelope(lone, run.name, [1.0, 2.0]), traceparent=lone_trace)),
                             headers={"Nats-Msg-Id": lone, "Orbit-Job-Id": lone, "traceparent": lone_trace})
        traced, untraced, bundle_trace = f"sdk-{uuid.uuid4().hex}", f"sdk-{uuid.uuid4().hex}", traceparent()
        bundle = contract.join_bundle([contract.dumps(dict(envelope(traced, run.name, [1.0]), traceparent=bundle_trace)),
                                       contract.dumps(envelope(untraced, run.name, [2.0]))])
        await run.js.publish(contract.job_subject(run.name), bundle,
                             headers={"Nats-Msg-Id": contract.bundle_id(traced, 2), "Orbit-Bundle-Size": "2"})
        bad = f"sdk-{uuid.uuid4().hex}"
        await run.js.publish(contract.job_subject(run.name),
                             contract.dumps(dict(envelope(bad, run.name, [3.0]), traceparent="00-not-a-context-01")),
                             headers={"Nats-Msg-Id": bad, "Orbit-Job-Id": bad})
        results = {record["job_id"]: (headers, bundled, record) for headers, bundled, record in await run.next_results(4)}

        headers, bundled, record = results[lone]
        assert not bundled and record["status"] == "succeeded"
        assert record["traceparent"] == lone_trace and headers["traceparent"] == lone_trace
        headers, bundled, record = results[traced]
        assert bundled and record["traceparent"] == bundle_trace and "traceparent" not in headers
        assert "traceparent" not in results[untraced][2]
        headers, _, record = results[bad]
        assert record["status"] == "succeeded" and "traceparent" not in record and "traceparent" not in headers

        # A sync call: the context comes in the request's header.
        job_id, sync_trace = f"sdk-sync-{uuid.uuid4().hex}", traceparent()
        reply = await run.nc.request(f"orbit.fn.{run.name}", b'{"data":[1,2,3]}',
                                     headers={"Orbit-Job-Id": job_id, "traceparent": sync_trace}, timeout=5)
        assert contract.loads(reply.data)["status"] == "succeeded"
        [(headers, bundled, record)] = await run.next_results(1)
        assert not bundled and record["job_id"] == job_id and record["source"] == "sync"
        assert record["traceparent"] == sync_trace and headers["traceparent"] == sync_trace


async def test_shutdown_finishes_and_acks_what_it_holds(nats_env):
    async with Running(nats_env, delay=0.5) as run:
        job = f"sdk-{uuid.uuid4().hex}"
        await run.js.publish(contract.job_subject(run.name), contract.dumps(envelope(job, run.name, [2.0])),
                             headers={"Nats-Msg-Id": job, "Orbit-Job-Id": job})
        for _ in range(50):
            info = await run.js.consumer_info(contract.JOBS_STREAM, contract.consumer_name(run.name))
            if info.num_ack_pending:
                break
            await asyncio.sleep(0.02)
        await run.stop()
        [(_, _, record)] = await run.next_results(1)
        assert record["job_id"] == job and record["status"] == "succeeded"
        info = await run.js.consumer_info(contract.JOBS_STREAM, contract.consumer_name(run.name))
        assert info.num_ack_pending == 0 and info.num_pending == 0
