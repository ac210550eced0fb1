#!/usr/bin/env python3
"""Orbit's gRPC door through the stock Triton client (tritonclient[grpc], unchanged).

    python3 tests/triton/grpc_client.py --url 127.0.0.1:8001 [--api-key KEY]

The gRPC twin of client.py: Triton's `inference.GRPCInferenceService` on ORBIT_GRPC_ADDR,
run against a gateway with moving_average, holt_winters and the model host (lstm_net,
cloud_mask) running, with the same models and semantics as the HTTP /v2 door. tritonclient.grpc
sends tensors as raw_input_contents and reads raw_output_contents. With --api-key every call
carries `authorization: Bearer KEY` (a key with the admin scope: the repository index asks for
it), and a call without it must fail UNAUTHENTICATED. Every check raises on a mismatch; the
script prints one JSON line of what it checked and exits 0, or prints the failure and exits 1.
"""

import argparse
import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

# What each model's metadata declares: the tensors a request carries and an answer holds.
MODELS = {
    "moving_average": ({"data"}, {"values"}),
    "holt_winters": ({"data"}, {"forecast"}),
    "lstm_net": ({"data"}, {"forecast"}),
    "cloud_mask": ({"tile"}, {"cloud_probability", "cloud_fraction"}),
}


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def moving_average(values, window):
    return np.convolve(values, np.ones(window) / window, mode="valid")


def expect_error(call, status, text):
    """`call` must raise the gRPC status `status` ("StatusCode.NOT_FOUND") mentioning `text`."""
    try:
        call()
    except InferenceServerException as err:
        check(
            err.status() == status and text in (err.message() or ""),
            f"expected {status} mentioning {text!r}, got {err.status()} {err.message()}",
        )
    else:
        raise AssertionError(f"expected {status} mentioning {text!r}, the call succeeded")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="host:port of the gRPC door (ORBIT_GRPC_ADDR)")
    parser.add_argument("--api-key", help="an API key (admin scope) every call presents")
    parser.add_argument("--ca", help="the CA (PEM file) of a door that speaks TLS")
    args = parser.parse_args()
    if args.ca:
        client = grpcclient.InferenceServerClient(url=args.url, ssl=True, root_certificates=args.ca)
    else:
        client = grpcclient.InferenceServerClient(url=args.url)
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else None
    done = []

    if args.api_key:
        # Without the key the door refuses, with the status a gRPC client expects.
        expect_error(lambda: client.get_server_metadata(), "StatusCode.UNAUTHENTICATED", "")
        expect_error(lambda: client.infer("moving_average", [_series([1, 2, 3])]), "StatusCode.UNAUTHENTICATED", "")
        done.append("without the API key: UNAUTHENTICATED")

    check(client.is_server_live(headers=headers) and client.is_server_ready(headers=headers), "server live and ready")
    metadata = client.get_server_metadata(headers=headers)
    extensions = list(metadata.extensions)
    check({"statistics", "model_repository"} <= set(extensions), f"extensions: {extensions}")
    for model, (inputs, outputs) in MODELS.items():
        check(client.is_model_ready(model, headers=headers), f"{model} ready")
        meta = client.get_model_metadata(model, headers=headers)
        check(meta.name == model, f"{model} metadata name {meta.name}")
        check({t.name for t in meta.inputs} == inputs, f"{model} metadata inputs {meta.inputs}")
        check({t.name for t in meta.outputs} == outputs, f"{model} metadata outputs {meta.outputs}")
        check(all(t.datatype for t in list(meta.inputs) + list(meta.outputs)), f"{model} tensor datatypes")
        config = client.get_model_config(model, headers=headers)
        check(config.config.name == model, f"{model} config {config.config.name}")
    done.append("health, metadata, readiness, config of 4 models")

    # moving_average: one series, with a function parameter, one output asked for by name.
    series = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    data = grpcclient.InferInput("data", [6], "FP64")
    data.set_data_from_numpy(series)
    out = grpcclient.InferRequestedOutput("values")
    result = client.infer(
        "moving_average", [data], outputs=[out], parameters={"window": 3}, request_id="r-1", headers=headers
    )
    check(np.allclose(result.as_numpy("values"), moving_average(series, 3)), "moving_average values")
    response = result.get_response()
    check(response.id == "r-1", f"id echoed: {response.id!r}")
    check([o.name for o in response.outputs] == ["values"], f"outputs asked for: {[o.name for o in response.outputs]}")
    done.append("moving_average FP64 with parameters, request id and outputs")

    # A batch of four series, each datatype (raw_input_contents in, raw_output_contents out).
    batch = np.random.default_rng(7).normal(100, 10, size=(4, 64))
    for datatype, array in [("FP32", batch.astype(np.float32)), ("FP64", batch), ("INT32", batch.astype(np.int32)), ("INT64", batch.astype(np.int64))]:
        data = grpcclient.InferInput("data", list(array.shape), datatype)
        data.set_data_from_numpy(array)
        result = client.infer("moving_average", [data], parameters={"window": 5}, headers=headers)
        values = result.as_numpy("values")
        check(values is not None and values.shape == (4, 60), f"{datatype} batch shape {None if values is None else values.shape}")
        expected = np.stack([moving_average(row.astype(np.float64), 5) for row in array])
        check(np.allclose(values, expected), f"{datatype} batch values")
    done.append("moving_average [4, 64] batches in FP32, FP64, INT32, INT64")

    # The forecasters, with a version named.
    seasonal = np.array([[100 + 10 * np.sin(t * 2 * np.pi / 12) + 0.2 * t for t in range(48)]] * 2, dtype=np.float32)
    data = grpcclient.InferInput("data", list(seasonal.shape), "FP32")
    data.set_data_from_numpy(seasonal)
    result = client.infer("lstm_net", [data], model_version="1", parameters={"horizon": 6}, headers=headers)
    forecast = result.as_numpy("forecast")
    check(forecast is not None and forecast.shape == (2, 6), f"lstm forecast shape {None if forecast is None else forecast.shape}")
    check(result.get_response().model_version == "1", f"lstm version {result.get_response().model_version!r}")
    data = grpcclient.InferInput("data", [48], "FP32")
    data.set_data_from_numpy(seasonal[0])
    result = client.infer("holt_winters", [data], parameters={"season_length": 12, "horizon": 12}, headers=headers)
    forecast = result.as_numpy("forecast")
    check(forecast is not None and forecast.shape == (12,), f"holt_winters shape {None if forecast is None else forecast.shape}")
    check(abs(forecast[0] - (100 + 10 * np.sin(48 * 2 * np.pi / 12) + 0.2 * 48)) < 2, f"holt_winters value {forecast[0]}")
    done.append("lstm_net [2, 48] with model_version, holt_winters [48]")

    # The image model: a tile, both outputs back.
    tile = np.full((1, 3, 16, 16), 0.9, dtype=np.float32)
    data = grpcclient.InferInput("tile", [1, 3, 16, 16], "FP32")
    data.set_data_from_numpy(tile)
    result = client.infer("cloud_mask", [data], headers=headers)
    probability = result.as_numpy("cloud_probability")
    fraction = result.as_numpy("cloud_fraction")
    check(probability is not None and probability.shape == (1, 1, 16, 16), "mask shape")
    check(fraction is not None and fraction.shape == (1, 1), "fraction shape")
    done.append("cloud_mask [1, 3, 16, 16]")

    # Errors: the client raises with the gRPC status and the field in the message.
    for call, status, text in [
        (lambda: client.infer("no_such_model", [data], headers=headers), "StatusCode.NOT_FOUND", "no_such_model"),
        (lambda: client.infer("moving_average", [_series([1, 2, 3])], parameters={"window": 0}, headers=headers), "StatusCode.INVALID_ARGUMENT", "parameters.window"),
        (lambda: client.infer("cloud_mask", [_series([1, 2, 3])], headers=headers), "StatusCode.INVALID_ARGUMENT", "inputs[0].name"),
        (lambda: client.infer("lstm_net", [_series([1] * 20)], model_version="9", headers=headers), "StatusCode.NOT_FOUND", "no version"),
    ]:
        expect_error(call, status, text)
    done.append("errors: unknown model NOT_FOUND, bad parameter INVALID_ARGUMENT, wrong input INVALID_ARGUMENT, unknown version NOT_FOUND")

    # A bidirectional stream (ModelStreamInfer): every request answered, a bad one with its error.
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
    for i in range(3):
        client.async_stream_infer("moving_average", [_series([1, 2, 3, 4])], parameters={"window": 2}, request_id=f"s-{i}")
    client.async_stream_infer("moving_average", [_series([1, 2, 3, 4])], parameters={"window": 0}, request_id="s-bad")
    got = [answers.get(timeout=30) for _ in range(4)]
    client.stop_stream()
    answered = sorted(r.get_response().id for r, e in got if e is None)
    failed = [e for r, e in got if e is not None]
    check(answered == ["s-0", "s-1", "s-2"], f"stream answers {answered}")
    check(len(failed) == 1 and "parameters.window" in str(failed[0]), f"stream error {failed}")
    for result, error in got:
        if error is None:
            check(np.allclose(result.as_numpy("values"), [1.5, 2.5, 3.5]), "stream values")
    done.append("ModelStreamInfer: 3 answered in any order, a bad request answered with its error")

    # 1 + 4 x 4 rows went through moving_average here; /v2 over HTTP shares the counts.
    statistics = client.get_inference_statistics("moving_average", headers=headers)
    counted = sum(s.inference_count for s in statistics.model_stats)
    check(counted >= 17, f"statistics count {counted}")
    index = client.get_model_repository_index(headers=headers)
    check(any(m.name == "cloud_mask" and m.state == "READY" for m in index.models), f"index {index}")
    done.append("statistics and repository index")

    print(json.dumps({"checked": done}))
    return 0


def _series(values):
    data = grpcclient.InferInput("data", [len(values)], "FP64")
    data.set_data_from_numpy(np.array(values, dtype=np.float64))
    return data


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # noqa: BLE001 - any failure is the test's failure
        print(f"FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
