#!/usr/bin/env python3
"""Check the committed model against its contract without retraining (seconds).

  - 1/model.onnx matches 1/model.onnx.sha256,
  - its input/output names, types and shapes are the ones the Rust side uses,
  - for every case in reference.json, normalise() reproduces "normalised",
    "mean" and "std", and onnxruntime reproduces the stored forecasts.

Run from the repository root:
  python3 models/lstm_net/verify.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from normalisation import normalise  # noqa: E402
HORIZON = 24


def main() -> int:
    onnx_path = HERE / "1" / "model.onnx"
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    expected = (HERE / "1" / "model.onnx.sha256").read_text().split()[0]
    assert digest == expected, f"sha256 {digest} != {expected}"

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, inp.type.tensor_type.elem_type, dims(inp)) == \
        ("window", onnx.TensorProto.FLOAT, ["batch", "length"]), inp
    assert (out.name, out.type.tensor_type.elem_type, dims(out)) == \
        ("forecast", onnx.TensorProto.FLOAT, ["batch", HORIZON]), out

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cases = json.loads((HERE / "reference.json").read_text())
    lengths = set()
    for case in cases:
        norm, mean, std = normalise(case["window"])
        assert np.array_equal(norm, np.asarray(case["normalised"], np.float32)), case["name"]
        assert mean == case["mean"] and std == case["std"], case["name"]
        f = sess.run(["forecast"], {"window": norm[None]})[0][0]
        np.testing.assert_allclose(f, case["forecast_normalised"], rtol=0, atol=1e-5,
                                   err_msg=case["name"])
        denorm = np.asarray(case["forecast_normalised"], np.float64) * std + mean
        np.testing.assert_allclose(denorm, case["forecast"], rtol=1e-12, atol=0,
                                   err_msg=case["name"])
        lengths.add(len(case["window"]))
    print(f"ok: sha256 {digest}, {len(cases)} reference cases, lengths {sorted(lengths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
