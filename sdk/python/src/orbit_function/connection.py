"""One way to connect to NATS, with the credentials and TLS of the process's environment:
`ORBIT_NATS_CREDS` (a .creds file) or `ORBIT_NATS_USER` / `ORBIT_NATS_PASSWORD`;
`ORBIT_NATS_CA_FILE` (TLS required), `ORBIT_NATS_CERT_FILE` / `ORBIT_NATS_KEY_FILE` (a client
certificate). With a user, replies come to its own inbox prefix `_INBOX_<user>`, the only one
its permissions let it read."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import Any

import nats
from nats.aio.client import Client

from .config import ConfigError, setting

log = logging.getLogger("orbit_function.connection")


def redacted(url: str) -> str:
    """A URL as it may be logged: any `user:password@` taken out."""
    return ",".join(re.sub(r"^([a-z]+://)?[^@/]*@", lambda m: f"{m.group(1) or ''}***@", s) for s in url.split(","))


def options() -> dict[str, Any]:
    out: dict[str, Any] = {}
    creds = setting("ORBIT_NATS_CREDS")
    if creds:
        out["user_credentials"] = creds
    user, password = setting("ORBIT_NATS_USER"), setting("ORBIT_NATS_PASSWORD")
    if user and password:
        out["user"], out["password"] = user, password
        out["inbox_prefix"] = f"_INBOX_{user}"
    ca, cert, key = setting("ORBIT_NATS_CA_FILE"), setting("ORBIT_NATS_CERT_FILE"), setting("ORBIT_NATS_KEY_FILE")
    if bool(cert) != bool(key):
        raise ConfigError("set both ORBIT_NATS_CERT_FILE and ORBIT_NATS_KEY_FILE, or neither")
    if ca or cert:
        context = ssl.create_default_context(cafile=ca)
        if cert and key:
            context.load_cert_chain(cert, key)
        out["tls"] = context
    return out


async def _on_error(err: Exception) -> None:
    log.warning("NATS connection error", extra={"error": str(err) or type(err).__name__})


async def _on_disconnected() -> None:
    # Also called by a deliberate close; a lost connection shows in `_on_error` first.
    log.info("disconnected from NATS")


async def _on_reconnected() -> None:
    log.info("reconnected to NATS")


async def connect(url: str, name: str, attempts: int = 60) -> Client:
    """Connects (retrying once a second while the server is not up yet), then reconnects for
    ever."""
    servers = [s.strip() for s in url.split(",") if s.strip()]
    settings = options()
    for attempt in range(1, attempts + 1):
        try:
            client = await nats.connect(
                servers=servers,
                name=name,
                connect_timeout=5,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=_on_error,
                disconnected_cb=_on_disconnected,
                reconnected_cb=_on_reconnected,
                **settings,
            )
            log.info("connected to NATS", extra={"url": redacted(url), "connection": name})
            return client
        except (OSError, asyncio.TimeoutError, nats.errors.Error) as err:
            if attempt == attempts:
                raise ConnectionError(f"cannot connect to NATS at {redacted(url)}: {err}") from err
            log.warning("NATS not reachable yet; retrying", extra={"error": str(err), "attempt": attempt})
            await asyncio.sleep(1)
    raise ConnectionError(f"cannot connect to NATS at {redacted(url)}")
