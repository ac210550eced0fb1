#!/usr/bin/env python3
"""Keeps one process of the local stack running, the way a deployment's restart policy does.

    supervise.py RUN_DIR NAME -- COMMAND [ARGS...]

Starts COMMAND and, when it dies without being asked to (a crash, a `kill -9`), starts it
again after a back-off: 1 s, doubling up to 30 s, back to 1 s once a run has lasted a minute,
so a process that cannot start does not spin. SIGTERM or SIGINT to the supervisor is passed to
the process, which drains and exits; the supervisor then exits too, without a restart.

Files in RUN_DIR, for `just status`, `just down` and the benchmark:
  NAME.pid             the process's own pid (rewritten on every restart)
  NAME.supervisor.pid  this supervisor's pid (what `just down` signals)
  NAME.state           JSON: restarts, the last exit (code or signal), when it last started
The process's output goes to this script's own output (`just up` sends it to the log).
"""

import json
import os
import signal
import subprocess
import sys
import time

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
# A run this long counts as healthy: the next crash starts the back-off from the beginning.
HEALTHY_AFTER = 60.0


def write(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def main():
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        sys.exit(__doc__)
    run_dir, name, command = sys.argv[1], sys.argv[2], sys.argv[4:]
    base = os.path.join(run_dir, name)
    write(f"{base}.supervisor.pid", f"{os.getpid()}\n")

    stopping = False
    child = None

    def on_stop(signum, _frame):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    restarts, backoff, last_exit = 0, BACKOFF_FIRST, None
    while True:
        started = time.time()
        child = subprocess.Popen(command)
        write(f"{base}.pid", f"{child.pid}\n")
        write(f"{base}.state", json.dumps({
            "restarts": restarts, "last_exit": last_exit, "started_at": started,
            "pid": child.pid,
        }) + "\n")
        code = child.wait()
        if stopping:
            break
        last_exit = f"signal {-code}" if code < 0 else f"code {code}"
        ran = time.time() - started
        if ran >= HEALTHY_AFTER:
            backoff = BACKOFF_FIRST
        print(f"[supervise] {name} exited ({last_exit}) after {ran:.1f} s; "
              f"restarting in {backoff:.0f} s", file=sys.stderr, flush=True)
        deadline = time.time() + backoff
        while not stopping and time.time() < deadline:
            time.sleep(0.1)
        if stopping:
            break
        backoff = min(backoff * 2, BACKOFF_MAX)
        restarts += 1
    for suffix in ("pid", "supervisor.pid", "state"):
        try:
            os.remove(f"{base}.{suffix}")
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
