"""The operation server: the FastAPI app of the design Orbit replaces.

`POST /api/v1/inference/submit` checks the body, marks the job `queued` in the Redis cache and
hands it to Celery (`apply_async` on the `inference` queue); `GET /api/v1/inference/{job_id}`
answers from the cache, else from Postgres.
"""

import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any

import psycopg
import redis.asyncio as redis
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from tasks import CACHE_URL, DATABASE_URL, JOB_TTL_SECONDS, inference_task

MODELS = {"moving_average"}

app = FastAPI(title="Operation Server")
# Requests wait for a pooled connection rather than fail when more of them are in flight
# than the pool holds (the plain pool raises "Too many connections").
cache = redis.Redis(
    connection_pool=redis.BlockingConnectionPool.from_url(CACHE_URL, max_connections=32, timeout=10)
)


class JobRequest(BaseModel):
    model_name: str
    data: list[float] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


@app.post("/api/v1/inference/submit", status_code=202)
async def submit(request: JobRequest):
    if request.model_name not in MODELS:
        raise HTTPException(422, f"unknown model_name {request.model_name!r}")
    job_id = str(uuid.uuid4())
    submitted_at = datetime.now(timezone.utc).isoformat()
    await cache.set(f"job:{job_id}", json.dumps({"job_id": job_id, "status": "queued"}),
                    ex=JOB_TTL_SECONDS)
    inference_task.apply_async(
        args=(job_id, request.model_name, request.data, request.parameters,
              request.metadata, submitted_at),
        task_id=job_id,
        queue="inference",
    )
    return {"job_id": job_id, "status": "queued"}


@app.get("/api/v1/inference/{job_id}")
async def status(job_id: str):
    cached = await cache.get(f"job:{job_id}")
    if cached is not None:
        return json.loads(cached)
    async with await psycopg.AsyncConnection.connect(DATABASE_URL) as connection:
        row = await (await connection.execute(
            "SELECT status, output, error FROM inference_results WHERE job_id = %s", (job_id,)
        )).fetchone()
    if row is None:
        raise HTTPException(404, f"no job {job_id}")
    return {"job_id": job_id, "status": row[0], "output": row[1], "error": row[2]}


@app.get("/health")
async def health():
    return {"status": "ok"}
