#!/usr/bin/env python3
"""The two doors of the Open Inference Protocol as Triton's own Python clients see them: the
same 64-point moving average through `tritonclient.http` (port 8000, binary tensors) and
`tritonclient.grpc` (port 8001, raw contents), one caller, one after the other, latency per
call as the client measures it. Against a running `just up`:

    PYTHONPATH=.orbit/tools/triton python3 bench/triton_clients.py --calls 2000
"""

import argparse
import json
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def percentiles(samples):
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": round(pick(0.50), 3), "p99_ms": round(pick(0.99), 3)}


def timed(call, calls):
    for _ in range(min(200, calls)):  # warm up
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--http", default="127.0.0.1:8000")
    parser.add_argument("--grpc", default="127.0.0.1:8001")
    args = parser.parse_args()
    series = 100 + 10 * np.sin(np.arange(64) * 0.2)

    http = httpclient.InferenceServerClient(args.http)
    http_input = httpclient.InferInput("data", [64], "FP64")
    http_input.set_data_from_numpy(series, binary_data=True)
    http_output = httpclient.InferRequestedOutput("values", binary_data=True)
    http_samples = timed(lambda: http.infer("moving_average", [http_input], outputs=[http_output], parameters={"window": 5}), args.calls)

    grpc = grpcclient.InferenceServerClient(args.grpc)
    grpc_input = grpcclient.InferInput("data", [64], "FP64")
    grpc_input.set_data_from_numpy(series)
    grpc_samples = timed(lambda: grpc.infer("moving_average", [grpc_input], parameters={"window": 5}), args.calls)

    for door, samples in [("tritonclient.http (binary)", http_samples), ("tritonclient.grpc", grpc_samples)]:
        print(json.dumps({"door": door, "calls": len(samples), **percentiles(samples)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
