#!/usr/bin/env python3
"""A minimal OTLP/HTTP receiver for measuring what tracing costs: it takes every
`POST /v1/traces` (protobuf), counts the bytes and requests, and answers 200 with an empty
ExportTraceServiceResponse, as a collector would, without decoding or storing anything.

    python3 bench/otlp_sink.py --port 4318 &
    just down && ORBIT_OTLP_ENDPOINT=http://127.0.0.1:4318 just up && just bench v2

On SIGTERM (or Ctrl-C) it prints one line: requests and bytes received.
"""

import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = {"requests": 0, "bytes": 0}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - the http.server API
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        received["requests"] += 1
        received["bytes"] += length
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(*_):
        print(f"otlp sink: {received['requests']} requests, {received['bytes']} bytes", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
