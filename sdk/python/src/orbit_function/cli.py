"""The command line every Python function shares, as the Rust function binaries have it:

    python my_function.py            serve until SIGINT/SIGTERM (also: ... serve)
    python my_function.py describe   print the descriptor (JSON) and exit
    python my_function.py register   write the descriptor to the function catalog and exit

`ORBIT_FUNCTION_NAME` serves the function under another name.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Optional, Sequence

import uvloop

from . import logs
from .config import Config, ConfigError, StreamSettings, setting
from .connection import connect
from .declaration import Function
from .replica import Replica, ensure_streams, register

log = logging.getLogger("orbit_function")

USAGE = "usage: {program} [serve | describe | register]"


def main(function: Function, argv: Optional[Sequence[str]] = None) -> None:
    """Runs `function` as the command line asks; exits with the process's status."""
    sys.exit(run(function, sys.argv[1:] if argv is None else list(argv)))


def run(function: Function, args: list[str]) -> int:
    logs.init(log_level(), setting("ORBIT_LOG_FORMAT") == "json")
    command = args[0] if args else "serve"
    if command not in ("serve", "describe", "register") or len(args) > 1:
        print(USAGE.format(program=sys.argv[0] or "function"), file=sys.stderr)
        return 2
    renamed = setting("ORBIT_FUNCTION_NAME")
    try:
        if renamed:
            function = function.renamed(renamed)
    except ValueError as err:
        log.error("ORBIT_FUNCTION_NAME is not a valid function name", extra={"error": str(err)})
        return 1
    if command == "describe":
        print(json.dumps(function.descriptor(), indent=2))
        return 0
    try:
        config = Config.from_env(function.name)
        work = _register(function, config) if command == "register" else _serve(function, config)
        # uvloop's event loop turns several times faster than asyncio's own, and a sync call
        # is a handful of turns (the call, the record's publish and its ack, the reply).
        uvloop.run(work)
        return 0
    except (ConfigError, ConnectionError) as err:
        log.error("the function cannot start", extra={"error": str(err)})
        return 1
    except Exception:  # noqa: BLE001 - the process's edge: say why, then fail
        log.exception("the function stopped with an error")
        return 1


def log_level() -> str:
    """`RUST_LOG` where it is one plain level (the stack's setting for every process, Rust or
    not), else INFO."""
    named = (setting("RUST_LOG") or "info").lower()
    levels = {"error": "ERROR", "warn": "WARNING", "info": "INFO", "debug": "DEBUG", "trace": "DEBUG"}
    return levels.get(named, "INFO")


async def _serve(function: Function, config: Config) -> None:
    replica = Replica(function, config)
    replica.stop_on_signals()
    await replica.serve()


async def _register(function: Function, config: Config) -> None:
    client = await connect(config.nats_url, f"{function.name}-register")
    try:
        js = client.jetstream()
        await ensure_streams(js, StreamSettings.from_env())
        await register(js, function)
        log.info("registered in the function catalog", extra={"function": function.name})
    finally:
        await client.close()
