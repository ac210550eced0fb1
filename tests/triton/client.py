#!/usr/bin/env python3
"""Orbit's /v2 through the stock Triton client (tritonclient[http], unchanged).

    python3 tests/triton/client.py --url 127.0.0.1:8000

Run by tests/tests/triton.rs against a gateway with moving_average, holt_winters and the model
host (lstm_net, cloud_mask) running. Every check raises on a mismatch; the script
prints one JSON line of what it checked and exits 0, or prints the failure and exits 1.
"""

import argparse
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def moving_average(values, window):
    return np.convolve(values, np.ones(window) / window, mode="valid")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    client = httpclient.InferenceServerClient(url=args.url)
    done = []

    check(client.is_server_live() and client.is_server_ready(), "server live and ready")
    metadata = client.get_server_metadata()
    check("binary_tensor_data" in metadata["extensions"], f"extensions: {metadata}")
    for model in ["moving_average", "holt_winters", "lstm_net", "cloud_mask"]:
        check(client.is_model_ready(model), f"{model} ready")
        check(client.get_model_metadata(model)["name"] == model, f"{model} metadata")
        check(client.get_model_config(model)["name"] == model, f"{model} config")
    done.append("health, metadata, readiness, config of 4 models")

    # moving_average: JSON both ways, with a function parameter, one series.
    series = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    data = httpclient.InferInput("data", [6], "FP64")
    data.set_data_from_numpy(series, binary_data=False)
    out = httpclient.InferRequestedOutput("values", binary_data=False)
    result = client.infer("moving_average", [data], outputs=[out], parameters={"window": 3}, request_id="r-1")
    check(np.allclose(result.as_numpy("values"), moving_average(series, 3)), "moving_average JSON")
    check(result.get_response()["id"] == "r-1", "id echoed")
    done.append("moving_average JSON")

    # A batch of four series in binary, in and out (the client's default), each datatype.
    batch = np.random.default_rng(7).normal(100, 10, size=(4, 64))
    for datatype, array in [("FP32", batch.astype(np.float32)), ("FP64", batch), ("INT32", batch.astype(np.int32)), ("INT64", batch.astype(np.int64))]:
        data = httpclient.InferInput("data", list(array.shape), datatype)
        data.set_data_from_numpy(array, binary_data=True)
        result = client.infer("moving_average", [data], parameters={"window": 5})
        values = result.as_numpy("values")
        check(values.shape == (4, 60), f"{datatype} batch shape {values.shape}")
        expected = np.stack([moving_average(row.astype(np.float64), 5) for row in array])
        check(np.allclose(values, expected), f"{datatype} batch values")
    done.append("moving_average [4, 64] batches in FP32, FP64, INT32, INT64, binary")

    # The forecasters, with a version named.
    seasonal = np.array([[100 + 10 * np.sin(t * 2 * np.pi / 12) + 0.2 * t for t in range(48)]] * 2, dtype=np.float32)
    data = httpclient.InferInput("data", list(seasonal.shape), "FP32")
    data.set_data_from_numpy(seasonal)
    result = client.infer("lstm_net", [data], model_version="1", parameters={"horizon": 6})
    check(result.as_numpy("forecast").shape == (2, 6), "lstm forecast shape")
    check(result.get_response()["model_version"] == "1", "lstm version")
    data = httpclient.InferInput("data", [48], "FP32")
    data.set_data_from_numpy(seasonal[0])
    result = client.infer("holt_winters", [data], parameters={"season_length": 12, "horizon": 12})
    forecast = result.as_numpy("forecast")
    check(forecast.shape == (12,), f"holt_winters shape {forecast.shape}")
    check(abs(forecast[0] - (100 + 10 * np.sin(48 * 2 * np.pi / 12) + 0.2 * 48)) < 2, f"holt_winters value {forecast[0]}")
    done.append("lstm_net [2, 48] with model_version, holt_winters [48]")

    # The image model: a tile in binary, both outputs back in binary.
    tile = np.full((1, 3, 16, 16), 0.9, dtype=np.float32)
    data = httpclient.InferInput("tile", [1, 3, 16, 16], "FP32")
    data.set_data_from_numpy(tile)
    result = client.infer("cloud_mask", [data])
    check(result.as_numpy("cloud_probability").shape == (1, 1, 16, 16), "mask shape")
    check(result.as_numpy("cloud_fraction").shape == (1, 1), "fraction shape")
    done.append("cloud_mask [1, 3, 16, 16] binary")

    # Errors: the client raises with the protocol's status and the field in the message.
    for call, status, text in [
        (lambda: client.infer("no_such_model", [data]), "404", "no_such_model"),
        (lambda: client.infer("moving_average", [_series([1, 2, 3])], parameters={"window": 0}), "400", "parameters.window"),
        (lambda: client.infer("cloud_mask", [_series([1, 2, 3])]), "400", "inputs[0].name"),
        (lambda: client.infer("lstm_net", [_series([1] * 20)], model_version="9"), "404", "no version"),
    ]:
        try:
            call()
        except InferenceServerException as err:
            check(err.status() == status and text in err.message(), f"expected {status} mentioning {text}, got {err.status()} {err.message()}")
        else:
            raise AssertionError(f"expected an error mentioning {text}")
    done.append("errors: unknown model 404, bad parameter 400, wrong input 400, unknown version 404")

    statistics = client.get_inference_statistics("moving_average")
    counted = sum(s["inference_count"] for s in statistics["model_stats"])
    check(counted >= 17, f"statistics count {counted}")
    index = client.get_model_repository_index()
    check(any(m["name"] == "cloud_mask" and m.get("state") == "READY" for m in index), f"index {index}")
    done.append("statistics and repository index")

    print(json.dumps({"checked": done}))
    return 0


def _series(values):
    data = httpclient.InferInput("data", [len(values)], "FP64")
    data.set_data_from_numpy(np.array(values, dtype=np.float64))
    return data


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # noqa: BLE001 - any failure is the test's failure
        print(f"FAILED: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
