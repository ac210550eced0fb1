#!/usr/bin/env python3
"""Prints stack.toml's processes for the shell scripts, one per line, tab-separated:

    name  binary  kind  replicas  metrics-port(or -)  switch(or -)  needs(or -)  env(KEY=VALUE, space-separated, or -)

Replica counts already include ORBIT_REPLICAS_<NAME> overrides. Python 3.11's tomllib reads
the file, so the shell never parses TOML itself.
"""

import os
import sys
import tomllib
from pathlib import Path

KINDS = {"gateway", "function", "sink", "bridge"}


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "stack.toml"
    with path.open("rb") as handle:
        manifest = tomllib.load(handle)
    for process in manifest.get("process", []):
        name, binary, kind = process["name"], process["binary"], process["kind"]
        if kind not in KINDS:
            print(f"{path}: {name}: kind must be one of {sorted(KINDS)}", file=sys.stderr)
            return 1
        override = "ORBIT_REPLICAS_" + name.upper().replace("-", "_")
        replicas = int(os.environ.get(override) or process.get("replicas", 1))
        env = " ".join(f"{k}={v}" for k, v in process.get("env", {}).items())
        metrics = process.get("metrics")
        if metrics is not None and (not isinstance(metrics, int) or isinstance(metrics, bool)):
            print(f"{path}: {name}: metrics must be a port number", file=sys.stderr)
            return 1
        fields = [name, binary, kind, str(replicas), str(metrics) if metrics else "-",
                  process.get("switch", "-"), process.get("needs", "-"), env or "-"]
        print("\t".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
