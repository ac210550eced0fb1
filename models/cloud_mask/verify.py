#!/usr/bin/env python3
"""Check the committed cloud_mask files against each other (seconds, no training).

  - 1/model.onnx matches 1/model.onnx.sha256 (and the sha256 in reference.json
    and evaluation.json),
  - the ONNX checker passes (full_check), opset 17, IR version 8, size < 100 KB,
  - input/output names, element types and (symbolic) shapes and the metadata
    are the ones in the contract (README.md),
  - onnxruntime reproduces every case in reference.json within 1e-5, and
    cloud_fraction is the mean of cloud_probability,
  - the same cases run together as one batch give the same answers.

Run from the repository root:
  python3 models/cloud_mask/verify.py [--dir models/cloud_mask]
Exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
INPUT = "tile"
OUTPUTS = ("cloud_probability", "cloud_fraction")
ATOL = 1e-5
METADATA = {"task": "cloud_mask", "input_range": "0..1", "channels": "red,green,blue",
            "trained_tile": "32x32"}


class Mismatch(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Mismatch(msg)


def dims(vi) -> list:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def verify(d: Path) -> str:
    onnx_path = d / "1" / "model.onnx"
    raw = onnx_path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    sha_line = (d / "1" / "model.onnx.sha256").read_text()
    check(sha_line == f"{digest}  model.onnx\n",
          f"1/model.onnx.sha256 says {sha_line.strip()!r}, file hashes to {digest}")
    check(len(raw) < 100_000, f"model is {len(raw)} bytes (limit 100 KB)")

    model = onnx.load_from_string(raw)
    onnx.checker.check_model(model, full_check=True)
    check(model.ir_version == 8, f"ir_version {model.ir_version} != 8")
    opsets = {o.domain: o.version for o in model.opset_import}
    check(opsets == {"": 17}, f"opset_import {opsets} != {{'': 17}}")
    props = {p.key: p.value for p in model.metadata_props}
    for k, v in METADATA.items():
        check(props.get(k) == v, f"metadata {k}={props.get(k)!r}, expected {v!r}")

    g = model.graph
    check(len(g.input) == 1 and len(g.output) == 2,
          f"{len(g.input)} inputs / {len(g.output)} outputs, expected 1 / 2")
    f32 = onnx.TensorProto.FLOAT
    got = [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in (*g.input, *g.output)]
    want = [(INPUT, f32, ["batch", 3, "height", "width"]),
            (OUTPUTS[0], f32, ["batch", 1, "height", "width"]),
            (OUTPUTS[1], f32, ["batch", 1])]
    check(got == want, f"graph signature {got} != {want}")

    ref = json.loads((d / "reference.json").read_text())
    check(ref["sha256"] == digest, "reference.json was written for another model.onnx")
    ev = json.loads((d / "evaluation.json").read_text())
    check(ev["sha256"] == digest and ev["size_bytes"] == len(raw),
          "evaluation.json was written for another model.onnx")

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(raw, so, providers=["CPUExecutionProvider"])
    check([i.name for i in sess.get_inputs()] == [INPUT], "onnxruntime input names")
    check([o.name for o in sess.get_outputs()] == list(OUTPUTS), "onnxruntime output names")

    cases = ref["cases"]
    check(len(cases) >= 3, "reference.json has fewer than 3 cases")
    by_shape: dict[tuple, list] = {}
    for c in cases:
        x = np.asarray(c["tile"], np.float32)
        check(list(x.shape) == c["shape"] and x.shape[:2] == (1, 3), f"{c['name']}: shape")
        check(x.shape[2] >= 8 and x.shape[3] >= 8, f"{c['name']}: tile under 8x8")
        check(bool(np.all((x >= 0) & (x <= 1))), f"{c['name']}: tile outside 0..1")
        # Tiles are multiples of 2**-12, so the JSON decimals are exact.
        check(bool(np.all(x * 4096 == np.round(x * 4096))), f"{c['name']}: tile not 12-bit")
        p_ref = np.asarray(c["cloud_probability"], np.float32)
        f_ref = np.asarray(c["cloud_fraction"], np.float32)
        p, f = sess.run(list(OUTPUTS), {INPUT: x})
        check(p.shape == (1, 1) + x.shape[2:] and p.shape == p_ref.shape,
              f"{c['name']}: cloud_probability shape {p.shape}")
        check(f.shape == (1, 1) and f.shape == f_ref.shape,
              f"{c['name']}: cloud_fraction shape {f.shape}")
        dp = float(np.abs(p - p_ref).max())
        df = float(np.abs(f - f_ref).max())
        check(dp <= ATOL and df <= ATOL,
              f"{c['name']}: onnxruntime differs from reference.json by {max(dp, df):.3g}")
        check(bool(np.all((p >= 0) & (p <= 1))), f"{c['name']}: probability outside 0..1")
        check(abs(float(p.mean()) - float(f[0, 0])) <= 1e-6,
              f"{c['name']}: cloud_fraction is not the mean of cloud_probability")
        by_shape.setdefault(x.shape[2:], []).append((x, p, f))
    for shape, items in by_shape.items():
        if len(items) > 1:
            xb = np.concatenate([x for x, _, _ in items])
            pb, fb = sess.run(list(OUTPUTS), {INPUT: xb})
            for i, (_, p, f) in enumerate(items):
                check(float(np.abs(pb[i] - p[0]).max()) <= 1e-6
                      and float(np.abs(fb[i] - f[0]).max()) <= 1e-6,
                      f"batched run of {shape} tiles differs from one-by-one")
    shapes = sorted({tuple(c["shape"][2:]) for c in cases})
    return (f"ok: sha256 {digest}, {len(raw)} bytes, {len(cases)} reference cases "
            f"(tiles {', '.join(f'{h}x{w}' for h, w in shapes)}), max |diff| <= {ATOL}")


def main() -> int:
    ap = argparse.ArgumentParser(description="Check the cloud_mask model files.")
    ap.add_argument("--dir", type=Path, default=HERE,
                    help="folder holding 1/model.onnx, reference.json, evaluation.json")
    args = ap.parse_args()
    try:
        print(verify(args.dir))
    except (Mismatch, onnx.checker.ValidationError, FileNotFoundError, KeyError) as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
