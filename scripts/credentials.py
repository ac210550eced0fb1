#!/usr/bin/env python3
"""Least-privilege credentials for the local stacks, from stack.toml and nats/permissions.toml.

    credentials.py ROOT DATA SECRETS PG_URL_BASE REDIS_URL_BASE

Writes, all outside git:
  DATA/nats/nats-server.conf   nats/nats-server.conf plus an `authorization` block: one user
                               per component, with the subjects nats/permissions.toml allows,
                               and `no_auth_user: caller` when the server binds loopback
  SECRETS/nats-<user>          each user's generated password (mode 600)
  SECRETS/process/<user>.env   what the launchers (scripts/stack.sh, the tests) give a
                               process on top of the shared environment: its NATS user and
                               password, and its own Postgres and Redis URLs (empty for a
                               process that uses neither, so no process holds the owner's)

PG_URL_BASE is `127.0.0.1:PORT/DB`, REDIS_URL_BASE `127.0.0.1:PORT/0`; the Postgres roles and
Redis users themselves are made by scripts/infra.sh with the same passwords.
"""

import json
import os
import secrets
import sys
import tomllib
from pathlib import Path

# Which component uses which Postgres role and Redis user (the names infra.sh creates).
POSTGRES_ROLES = {"gateway": "orbit_gateway", "sink-postgres": "orbit_sink"}
REDIS_USERS = {"gateway": "orbit-gateway", "sink-redis": "orbit-sink"}


def secret(secrets_dir: Path, name: str) -> str:
    path = secrets_dir / name
    if not path.exists() or not path.read_text().strip():
        secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(secrets_dir, 0o700)
        path.write_text(secrets.token_hex(16) + "\n")
        os.chmod(path, 0o600)
    return path.read_text().strip()


def users(root: Path) -> dict[str, dict]:
    """Every user with its publish/subscribe lists and allow_responses, placeholders filled."""
    with (root / "nats/permissions.toml").open("rb") as handle:
        spec = tomllib.load(handle)
    with (root / "stack.toml").open("rb") as handle:
        stack = tomllib.load(handle)
    declared = dict(spec.get("user", {}))
    for process in stack.get("process", []):
        if process["kind"] == "function" and process["name"] not in declared:
            declared[process["name"]] = {"template": "function"}
    out = {}
    for user, own in declared.items():
        template = spec.get(own["template"], {}) if "template" in own else {}
        name = own.get("name", user)
        log = own.get("log", user)
        fill = lambda subjects: [s.replace("{user}", user).replace("{name}", name).replace("{log}", log)
                                 for s in subjects]
        common = spec["common"] if own.get("common", True) else {}
        publish = fill(common.get("publish", []) + template.get("publish", []) + own.get("publish", []))
        subscribe = fill(common.get("subscribe", []) + template.get("subscribe", []) + own.get("subscribe", []))
        out[user] = {
            "publish": list(dict.fromkeys(publish)),
            "subscribe": list(dict.fromkeys(subscribe)),
            "allow_responses": own.get("allow_responses", template.get("allow_responses", False)),
        }
    return out


def authorization(everyone: dict[str, dict], password_of) -> str:
    """The NATS server's `authorization` block for `everyone` (from `users`), each user's
    password written as `password_of(user)` returns it: a quoted literal for the local stacks,
    an environment reference (`$NAME`) for compose.yaml's server (scripts/deploy.py)."""
    blocks = []
    for user, rights in everyone.items():
        permissions = {"publish": {"allow": rights["publish"]}, "subscribe": {"allow": rights["subscribe"]}}
        if rights["allow_responses"]:
            permissions["allow_responses"] = rights["allow_responses"]
        # JSON is valid NATS configuration syntax.
        blocks.append(f"    {{user: {json.dumps(user)}, password: {password_of(user)}, "
                      f"permissions: {json.dumps(permissions)}}}")
    return "authorization {\n  users: [\n" + ",\n".join(blocks) + "\n  ]\n}\n"


# Users that are no process of the stack: the operators' and the callers'.
NOT_PROCESSES = {"admin", "caller"}


def binds_loopback(conf: str) -> bool:
    """Whether a server configured by `conf` listens on loopback only (its `host`)."""
    for line in conf.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "host":
            return value.strip().strip("'\"") in {"127.0.0.1", "localhost", "::1"}
    return False


def anonymous(conf: str) -> str:
    """NATS's `no_auth_user` for a server on loopback: a client without credentials is a
    `caller` (nats/permissions.toml), as an HTTP client on loopback needs no key. Beyond
    loopback nobody is anonymous."""
    if not binds_loopback(conf):
        return ""
    return ("# A client that brings no credentials is a caller (functions and discovery only).\n"
            'no_auth_user: "caller"\n')


def main() -> int:
    root, data, secrets_dir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    pg_base, redis_base = sys.argv[4], sys.argv[5]
    everyone = users(root)
    block = authorization(everyone, lambda user: json.dumps(secret(secrets_dir, f"nats-{user}")))
    conf_dir = data / "nats"
    conf_dir.mkdir(parents=True, exist_ok=True)
    base = (root / "nats/nats-server.conf").read_text()
    conf = conf_dir / "nats-server.conf"
    old_umask = os.umask(0o077)
    try:
        conf.write_text(
            "# Generated by scripts/credentials.py from nats/nats-server.conf and nats/permissions.toml.\n"
            + base + "\n" + block + anonymous(base))
        process_dir = secrets_dir / "process"
        process_dir.mkdir(parents=True, exist_ok=True)
        for user in everyone:
            if user in NOT_PROCESSES:
                continue
            lines = [f"ORBIT_NATS_USER={user}", f"ORBIT_NATS_PASSWORD={secret(secrets_dir, f'nats-{user}')}"]
            role = POSTGRES_ROLES.get(user)
            lines.append("ORBIT_DATABASE_URL=" + (
                f"postgres://{role}:{secret(secrets_dir, f'postgres-{role}')}@{pg_base}" if role else ""))
            redis_user = REDIS_USERS.get(user)
            lines.append("ORBIT_REDIS_URL=" + (
                f"redis://{redis_user}:{secret(secrets_dir, f'redis-{redis_user}')}@{redis_base}" if redis_user else ""))
            if user == "sink-postgres":
                # Its role cannot create tables: the launchers apply the migrations first,
                # as the owner (`sink-postgres migrate`).
                lines.append("ORBIT_MIGRATE=off")
            (process_dir / f"{user}.env").write_text("\n".join(lines) + "\n")
    finally:
        os.umask(old_umask)
    return 0


if __name__ == "__main__":
    sys.exit(main())
