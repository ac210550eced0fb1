"""JetStream publishes whose acks come back on one reply subscription of the replica's own.

nats-py's `JetStreamContext.publish` is a request per message, each awaited through
`asyncio.wait_for` (a task of its own on Python 3.11); on the sync path that wrapping was most
of the difference between a Python and a Rust replica. Here a publish is a plain publish with a
reply subject under one wildcard subscription, its ack a future resolved by that
subscription's callback, its timeout a timer: the same protocol, at a fraction of the cost, and
any number of publishes in flight at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import orjson


class PublishError(Exception):
    """JetStream did not store the message (no stream, a stream error, no answer in time)."""


def send_now(client: Any) -> None:
    """Writes what nats-py holds for the socket now, in this turn of the event loop, instead of
    in its flusher task's next turn (which then finds nothing left to write): a publish on the
    sync path leaves a turn sooner. Only while connected; otherwise the buffer waits for the
    reconnection as before. The same write the flusher does, on the same pinned nats-py."""
    transport = getattr(client, "_transport", None)
    if (
        transport is None
        or not client.is_connected
        or client.is_connecting
        or getattr(client, "_pending_data_size", 0) <= 0
    ):
        return
    transport.writelines(client._pending[:])
    client._pending = []
    client._pending_data_size = 0


class _Direct:
    """Quacks like the future nats-py's read loop resolves, calling `deliver` at once."""

    def __init__(self, deliver: Any):
        self.deliver = deliver

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def set_result(self, message: Any) -> None:
        self.deliver(message)


class Publisher:
    def __init__(self, client: Any, timeout: float = 5.0):
        self.client = client
        self.timeout = timeout
        self.prefix = client.new_inbox()
        self.pending: dict[str, asyncio.Future] = {}
        # When each pending publish gives up; one sweeper for all of them, not a timer each.
        self.deadlines: dict[str, float] = {}
        self.sequence = 0
        self.subscription: Optional[Any] = None
        self.sweeper: Optional[asyncio.Future] = None

    async def start(self) -> "Publisher":
        self.subscription = await self.client.subscribe(f"{self.prefix}.*", cb=self._on_ack)
        # nats-py hands a message of a subscription that holds a future straight to that
        # future from its read loop (its old-style requests); one whose `set_result` resolves
        # the ack saves each publish a hop through the subscription's queue and task, a tenth
        # of a sync call. nats-py is pinned (pyproject.toml); without the attribute, the
        # callback above does the same a hop later.
        if hasattr(self.subscription, "_future"):
            self.subscription._future = _Direct(self._resolve)
        self.sweeper = asyncio.ensure_future(self._sweep())
        return self

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.5, self.timeout / 4))
            now = loop.time()
            for token in [t for t, deadline in self.deadlines.items() if deadline <= now]:
                self._expire(token)

    async def _on_ack(self, message: Any) -> None:
        self._resolve(message)

    def _resolve(self, message: Any) -> None:
        token = message.subject[len(self.prefix) + 1 :]
        self.deadlines.pop(token, None)
        future = self.pending.pop(token, None)
        if future is None or future.done():
            return
        status = (message.headers or {}).get("Status")
        if status == "503":
            future.set_exception(PublishError("no stream takes this subject (no responders)"))
            return
        try:
            answer = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            future.set_exception(PublishError(f"an answer that is not JSON: {message.data[:200]!r}"))
            return
        error = answer.get("error") if isinstance(answer, dict) else None
        if error:
            future.set_exception(PublishError(f"{error.get('description', error)} ({error.get('err_code', '')})"))
        else:
            future.set_result(answer)

    def _expire(self, token: str) -> None:
        self.deadlines.pop(token, None)
        future = self.pending.pop(token, None)
        if future is not None and not future.done():
            future.set_exception(PublishError(f"no acknowledgement within {self.timeout} s"))

    async def publish(self, subject: str, payload: bytes, headers: Optional[dict[str, str]] = None) -> dict:
        """Publishes and waits for JetStream's ack (`{"stream", "seq", "duplicate"?}`)."""
        self.sequence += 1
        token = str(self.sequence)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending[token] = future
        self.deadlines[token] = loop.time() + self.timeout
        try:
            await self.client.publish(subject, payload, reply=f"{self.prefix}.{token}", headers=headers)
            send_now(self.client)
            return await future
        finally:
            self.pending.pop(token, None)
            self.deadlines.pop(token, None)
