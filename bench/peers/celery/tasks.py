"""The analysis worker: the Celery app, its tuning, and the inference task.

The task computes the moving average, then stores the result the way the design it stands for
did: an INSERT into Postgres (`ON CONFLICT DO NOTHING`, so a task delivered twice under
`acks_late` is recorded once) and the job's entry in the Redis cache.
"""

import json
import os
import socket
from datetime import datetime, timezone

import psycopg
import redis
from celery import Celery
from celery.signals import worker_process_init

BROKER_URL = os.environ["PEER_BROKER_URL"]
DATABASE_URL = os.environ["PEER_DATABASE_URL"]
CACHE_URL = os.environ["PEER_CACHE_URL"]
JOB_TTL_SECONDS = 86400

app = Celery("analysis", broker=BROKER_URL)
app.conf.update(
    # A job is acknowledged after it ran: a worker that dies mid-task leaves it to another.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Results go to Postgres and the cache explicitly; Celery's own result backend would store
    # every result a third time.
    task_ignore_result=True,
    # Four messages per worker process in flight: enough to hide the broker's round trip,
    # few enough that a lost worker strands little.
    worker_prefetch_multiplier=4,
    task_default_queue="inference",
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_database = None
_cache = None
WORKER_ID = f"celery@{socket.gethostname()}:{os.getpid()}"


@worker_process_init.connect
def _connect(**_):
    """Each prefork child opens its own connections once (none survive a fork)."""
    global _database, _cache, WORKER_ID
    _database = psycopg.connect(DATABASE_URL, autocommit=True)
    _cache = redis.Redis.from_url(CACHE_URL)
    WORKER_ID = f"celery@{socket.gethostname()}:{os.getpid()}"


def moving_average(data, window):
    if window < 1 or window > len(data):
        raise ValueError(f"window must be between 1 and {len(data)}, got {window}")
    values = []
    running = sum(data[:window])
    values.append(running / window)
    for i in range(window, len(data)):
        running += data[i] - data[i - window]
        values.append(running / window)
    return {"kind": "simple", "window": window, "values": values}


@app.task(name="inference_task")
def inference_task(job_id, model_name, data, parameters, metadata, submitted_at):
    started = datetime.now(timezone.utc)
    output, error = None, None
    try:
        output = moving_average(data, int(parameters.get("window", 5)))
        status = "succeeded"
    except (ValueError, TypeError) as failure:
        error, status = str(failure), "failed"
    finished = datetime.now(timezone.utc)
    _database.execute(
        "INSERT INTO inference_results (job_id, model_name, status, input_data, output, error,"
        " metadata, parameters, worker_id, submitted_at, started_at, finished_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (job_id) DO NOTHING",
        (
            job_id,
            model_name,
            status,
            json.dumps(data),
            None if output is None else json.dumps(output),
            error,
            json.dumps(metadata),
            json.dumps(parameters),
            WORKER_ID,
            submitted_at,
            started,
            finished,
        ),
    )
    _cache.set(
        f"job:{job_id}",
        json.dumps({"job_id": job_id, "status": status, "output": output, "error": error}),
        ex=JOB_TTL_SECONDS,
    )
