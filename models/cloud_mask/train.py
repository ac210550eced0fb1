#!/usr/bin/env python3
"""Train Orbit's demonstration cloud-mask model in JAX and export it as ONNX.

One deterministic run does everything:
  1. generates synthetic 32x32 RGB "satellite" tiles (land, water, desert,
     snow; cumulus, cirrus/haze, cloud shadows; sensor noise) with per-pixel
     cloud labels, from fixed seeds (training, held-out and reference seeds
     are different),
  2. trains a small fully convolutional net (2,965 parameters) with binary
     cross-entropy and a hand-written Adam,
  3. writes 1/model.onnx (hand-built with onnx.helper) and 1/model.onnx.sha256,
  4. checks onnxruntime against the JAX forward pass (reference tiles, a 64x48
     tile, batch-of-3 vs one-by-one) and fails if they disagree,
  5. evaluates the shipped ONNX file on the held-out tiles against a brightness
     threshold and a whiteness threshold (both tuned on the training tiles)
     -> evaluation.json, and writes reference.json.

The model is a demonstration trained on synthetic tiles only. It has not
been validated on real satellite imagery. See README.md.

Run from the repository root:
  python3 models/cloud_mask/train.py                 # the real run
  python3 models/cloud_mask/train.py --steps 50 --out-dir /tmp/cm   # smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

# One core, deterministic; must be set before jax is imported.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------- contract --
OPSET = 17
IR_VERSION = 8  # what opset 17 shipped with; loads in onnxruntime 1.31
INPUT = "tile"
OUTPUTS = ("cloud_probability", "cloud_fraction")
CHANNELS = ("red", "green", "blue")
TILE = 32  # training tile size (pixels, square)
MIN_SIDE = 8
# (in_channels, out_channels, kernel, dilation). "Same" output size through
# edge-replicate padding of (kernel // 2) * dilation on each side.
LAYERS = ((3, 12, 3, 1), (12, 12, 3, 2), (12, 12, 3, 1), (12, 1, 1, 1))

# ------------------------------------------------------------------- seeds --
TRAIN_SEED = 20250101
EVAL_SEED = 20250202
REF_SEED = 20250303
INIT_SEED = 7
BATCH_SEED = 11

# ---------------------------------------------------------------- training --
N_TRAIN = 6000
N_EVAL = 1000
N_EVAL_LARGE = 100  # 64x64 held-out tiles: size generalisation check
BATCH = 32
STEPS = 2000
PEAK_LR = 1e-2
FINAL_LR = 1e-4
WARMUP = 100
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8

# -------------------------------------------------------------- tolerances --
ORT_VS_JAX_ATOL = 1e-4
BATCH_VS_SINGLE_ATOL = 1e-6
QUANT = 4096.0  # tiles are quantised to multiples of 2**-12 (exact in f32, f64, decimal)

SURFACES = ("land", "water", "desert", "snow")
LAND, WATER, DESERT, SNOW = range(4)


# ================================================================ data ======
def noise_field(rng: np.random.Generator, hh: int, ww: int, scale: float,
                beta: float) -> np.ndarray:
    """Smooth fractal Gaussian noise of shape (hh, ww), zero mean, unit std.

    Power spectrum ~ 1/(f^2 + f0^2)^(beta/2) with f0 = 1/scale: power-law
    (fractal) detail at small scales, no structure much larger than `scale`
    pixels. Generated on a field twice the size and cropped, so the FFT's
    wrap-around does not show.
    """
    h2, w2 = 2 * hh, 2 * ww
    fy = np.fft.fftfreq(h2)[:, None]
    fx = np.fft.rfftfreq(w2)[None, :]
    amp = (fy * fy + fx * fx + (1.0 / scale) ** 2) ** (-beta / 4.0)
    amp[0, 0] = 0.0
    spec = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    f = np.fft.irfft2(spec, s=(h2, w2))[:hh, :ww]
    f = f - f.mean()
    return f / (f.std() + 1e-12)


def _surface_layer(rng, kind: int, h: int, w: int) -> np.ndarray:
    """Top-of-atmosphere reflectance (3, h, w) of one surface type."""
    if kind == LAND:
        # Vegetation (green) to bare soil (brown), mixed in smooth patches,
        # with fractal brightness texture (fields, relief).
        green = np.array([0.06, 0.10, 0.05])
        brown = np.array([0.21, 0.17, 0.11])
        u = np.clip(rng.uniform(0, 1) + 0.3 * noise_field(rng, h, w, rng.uniform(6, 16), 4.0),
                    0, 1)
        base = (1 - u)[None] * green[:, None, None] + u[None] * brown[:, None, None]
        tex = noise_field(rng, h, w, rng.uniform(3, 10), 2.5)
        return base * (1 + rng.uniform(0.15, 0.35) * tex)[None]
    if kind == WATER:
        # Dark, blue-ish; optional turbidity (sediment) adds some green/red.
        base = np.array([0.03, 0.045, 0.07]) + rng.uniform(0, 1) * np.array([0.04, 0.05, 0.02])
        tex = noise_field(rng, h, w, rng.uniform(4, 12), 3.0)
        return base[:, None, None] * (1 + 0.08 * tex)[None]
    if kind == DESERT:
        # Bright sand; dune texture.
        base = np.array([0.42, 0.35, 0.25]) * rng.uniform(0.8, 1.35)
        tex = noise_field(rng, h, w, rng.uniform(3, 8), 2.0)
        return base[:, None, None] * (1 + rng.uniform(0.05, 0.15) * tex)[None]
    # SNOW / ice: bright and white, slightly blue (blue-red contrast), almost
    # no texture.
    b = rng.uniform(0.6, 0.92)
    tint = rng.uniform(0.03, 0.09)
    base = np.array([b - tint, b - tint / 2, b])
    tex = noise_field(rng, h, w, 6.0, 2.0)
    return base[:, None, None] * (1 + 0.015 * tex)[None]


def make_tile(rng: np.random.Generator, h: int, w: int, *, primary: int | None = None,
              secondary: bool | None = None, cumulus: bool | None = None,
              haze: bool | None = None) -> dict:
    """One synthetic tile and its labels. Keyword overrides fix the scene type.

    Returns dict with
      x (3, h, w) float32 in [0, 1], quantised to multiples of 2**-12,
      cloud (h, w) uint8: 1 where total cloud opacity > 0.5,
      surface (h, w) uint8: index into SURFACES of the ground under the pixel,
      haze_clear (h, w) bool: clear pixels under visible haze (opacity > 0.2),
      shadow_clear (h, w) bool: clear pixels darkened by cloud shadow (> 20 %).
    """
    m = 8  # margin so cloud shadows can be offset from their clouds
    hh, ww = h + 2 * m, w + 2 * m
    if primary is None:
        primary = int(rng.choice(4, p=[0.35, 0.2, 0.2, 0.25]))
    if secondary is None:
        secondary = bool(rng.random() < 0.5)
    surface = np.full((h, w), primary, np.uint8)
    if secondary:
        other = int(rng.choice([k for k in range(4) if k != primary]))
        region = noise_field(rng, h, w, rng.uniform(8, 20), 5.0)
        # Hard threshold: coastlines, snow lines and field edges are sharp.
        surface[region > rng.uniform(-0.3, 1.0)] = other
    ground = np.zeros((3, h, w))
    for k in np.unique(surface):
        layer = _surface_layer(rng, int(k), h, w)
        ground = np.where((surface == k)[None], layer, ground)

    # Cumulus: thresholded smooth noise with a soft ramp -> soft edges.
    if cumulus is None:
        cumulus = bool(rng.random() < 0.65)
    a_cu = np.zeros((hh, ww))
    shadow = np.zeros((h, w))
    cloud_rgb = np.zeros((3, h, w))
    if cumulus:
        n = noise_field(rng, hh, ww, rng.uniform(6, 18), 4.5)
        cover = rng.uniform(0.05, 0.95)
        thr = np.quantile(n, 1 - cover)
        a_cu = np.clip(0.5 + (n - thr) / rng.uniform(0.3, 1.0), 0, 1)
        if rng.random() < 0.8:
            ang = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(2, 7)
            dy, dx = int(round(dist * np.sin(ang))), int(round(dist * np.cos(ang)))
            shadow = rng.uniform(0.45, 0.75) * a_cu[m + dy:m + dy + h, m + dx:m + dx + w]
        a_cu = a_cu[m:m + h, m:m + w]
        # Grey-white, spectrally flat, billowy texture, thin edges a bit greyer.
        cb = rng.uniform(0.6, 0.9) * (1 + 0.06 * noise_field(rng, h, w, 4.0, 3.0)) \
            * (0.85 + 0.15 * a_cu)
        cloud_rgb = cb[None] * np.array([1.0, 1.0, 1.0 + rng.uniform(-0.01, 0.02)])[:, None, None]
    else:
        a_cu = a_cu[m:m + h, m:m + w]

    # Cirrus / haze: semi-transparent white veil.
    if haze is None:
        haze = bool(rng.random() < 0.35)
    a_h = np.zeros((h, w))
    haze_rgb = np.zeros((3, 1, 1))
    if haze:
        n2 = noise_field(rng, h, w, rng.uniform(10, 30), 5.0)
        a_h = rng.uniform(0.15, 0.7) * np.clip(0.5 + rng.uniform(0.3, 0.6) * n2, 0, 1)
        haze_rgb = rng.uniform(0.7, 0.9) * np.array([1.0, 1.0, 1.02])[:, None, None]

    x = ground * (1 - shadow)[None]
    x = x * (1 - a_cu)[None] + cloud_rgb * a_cu[None]
    x = x * (1 - a_h)[None] + haze_rgb * a_h[None]
    # Illumination (sun elevation) gain and sensor noise, then 12-bit quantisation.
    x = x * rng.uniform(0.85, 1.1) + rng.normal(0, rng.uniform(0.004, 0.012), x.shape)
    x = np.clip(np.round(x * QUANT) / QUANT, 0.0, 1.0).astype(np.float32)

    opacity = 1 - (1 - a_cu) * (1 - a_h)
    cloud = (opacity > 0.5).astype(np.uint8)
    return dict(x=x, cloud=cloud, surface=surface,
                haze_clear=(cloud == 0) & (a_h > 0.2),
                shadow_clear=(cloud == 0) & (shadow > 0.2))


def make_set(seed: int, n: int, h: int, w: int) -> dict:
    """n tiles; tile i comes from its own generator seeded with (seed, i)."""
    tiles = [make_tile(np.random.default_rng([seed, i]), h, w) for i in range(n)]
    return {k: np.stack([t[k] for t in tiles]) for k in tiles[0]}


# =============================================================== model ======
def init_params(key) -> list[tuple[jnp.ndarray, jnp.ndarray]]:
    params = []
    for cin, cout, k, _ in LAYERS:
        key, sub = jax.random.split(key)
        std = np.sqrt(2.0 / (cin * k * k))  # He init for ReLU
        params.append((jax.random.normal(sub, (cout, cin, k, k), jnp.float32) * std,
                       jnp.zeros((cout,), jnp.float32)))
    return params


def logits_fn(params, x):
    """x [B, 3, H, W] -> logits [B, 1, H, W]; mirrors the ONNX graph exactly."""
    h = x
    for i, ((w, b), (_, _, k, d)) in enumerate(zip(params, LAYERS)):
        p = (k // 2) * d
        if p:
            h = jnp.pad(h, ((0, 0), (0, 0), (p, p), (p, p)), mode="edge")
        h = jax.lax.conv_general_dilated(h, w, (1, 1), "VALID", rhs_dilation=(d, d),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = h + b[None, :, None, None]
        if i < len(LAYERS) - 1:
            h = jax.nn.relu(h)
    return h


@jax.jit
def forward(params, x):
    p = jax.nn.sigmoid(logits_fn(params, x))
    return p, jnp.mean(p, axis=(2, 3))


def loss_fn(params, x, y):
    z = logits_fn(params, x)[:, 0]
    return jnp.mean(jax.nn.softplus(z) - y * z)  # binary cross-entropy on logits


def lr_at(step: int, steps: int) -> float:
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, steps - WARMUP)
    return FINAL_LR + 0.5 * (PEAK_LR - FINAL_LR) * (1 + np.cos(np.pi * t))


@jax.jit
def train_step(params, m, v, t, lr, x, y):
    loss, g = jax.value_and_grad(loss_fn)(params, x, y)
    m = jax.tree_util.tree_map(lambda a, b: BETA1 * a + (1 - BETA1) * b, m, g)
    v = jax.tree_util.tree_map(lambda a, b: BETA2 * a + (1 - BETA2) * b * b, v, g)
    c1 = 1 - BETA1 ** t
    c2 = 1 - BETA2 ** t
    params = jax.tree_util.tree_map(
        lambda p, a, b: p - lr * (a / c1) / (jnp.sqrt(b / c2) + ADAM_EPS), params, m, v)
    return params, m, v, loss


def train(data: dict, steps: int) -> tuple[list, list[dict], float]:
    params = init_params(jax.random.PRNGKey(INIT_SEED))
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    x_all = data["x"]
    y_all = data["cloud"].astype(np.float32)
    rng = np.random.default_rng(BATCH_SEED)
    order = rng.permutation(len(x_all))
    pos = 0
    log = []
    running = []
    t0 = time.perf_counter()
    for step in range(steps):
        if pos + BATCH > len(order):
            order, pos = rng.permutation(len(x_all)), 0
        idx = order[pos:pos + BATCH]
        pos += BATCH
        params, m, v, loss = train_step(params, m, v, jnp.float32(step + 1),
                                        jnp.float32(lr_at(step, steps)),
                                        x_all[idx], y_all[idx])
        running.append(float(loss))
        if (step + 1) % 250 == 0 or step + 1 == steps:
            entry = dict(step=step + 1, lr=float(lr_at(step, steps)),
                         mean_bce_last_steps=float(np.mean(running)),
                         seconds=round(time.perf_counter() - t0, 1))
            log.append(entry)
            print(f"  step {entry['step']:5d}  bce {entry['mean_bce_last_steps']:.4f}  "
                  f"lr {entry['lr']:.2e}  {entry['seconds']:.1f}s", flush=True)
            running = []
    return [(np.asarray(w), np.asarray(b)) for w, b in params], log, time.perf_counter() - t0


# ============================================================= export =======
def build_onnx(params) -> onnx.ModelProto:
    inits, nodes = [], []
    pads_seen = {}
    cur = INPUT
    for i, ((w, b), (cin, cout, k, d)) in enumerate(zip(params, LAYERS)):
        n = i + 1
        p = (k // 2) * d
        if p:
            pname = f"pads_{p}"
            if pname not in pads_seen:
                # [x1_begin, x2_begin, x3_begin, x4_begin, x1_end, ...] for N, C, H, W
                inits.append(numpy_helper.from_array(
                    np.array([0, 0, p, p, 0, 0, p, p], np.int64), pname))
                pads_seen[pname] = True
            nodes.append(helper.make_node("Pad", [cur, pname], [f"pad{n}"], name=f"pad{n}",
                                          mode="edge"))
            cur = f"pad{n}"
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"conv{n}.weight"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"conv{n}.bias"))
        out = "logits" if n == len(LAYERS) else f"conv{n}"
        nodes.append(helper.make_node("Conv", [cur, f"conv{n}.weight", f"conv{n}.bias"], [out],
                                      name=f"conv{n}", kernel_shape=[k, k],
                                      dilations=[d, d], pads=[0, 0, 0, 0], strides=[1, 1]))
        cur = out
        if n < len(LAYERS):
            nodes.append(helper.make_node("Relu", [cur], [f"relu{n}"], name=f"relu{n}"))
            cur = f"relu{n}"
    nodes.append(helper.make_node("Sigmoid", [cur], [OUTPUTS[0]], name="sigmoid"))
    nodes.append(helper.make_node("ReduceMean", [OUTPUTS[0]], [OUTPUTS[1]], name="fraction",
                                  axes=[2, 3], keepdims=0))
    graph = helper.make_graph(
        nodes, "cloud_mask",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                                       ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUTS[0], TensorProto.FLOAT,
                                       ["batch", 1, "height", "width"]),
         helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, ["batch", 1])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="orbit-train", producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.model_version = 1
    model.doc_string = ("Demonstration per-pixel cloud mask for RGB top-of-atmosphere "
                        "reflectance tiles. Trained on synthetic tiles only; not validated "
                        "on real satellite imagery.")
    helper.set_model_props(model, {
        "task": "cloud_mask",
        "input_range": "0..1",
        "channels": ",".join(CHANNELS),
        "trained_tile": f"{TILE}x{TILE}",
        "min_tile": f"{MIN_SIDE}x{MIN_SIDE}",
        "threshold": "0.5",
        "training_data": "synthetic",
    })
    onnx.checker.check_model(model, full_check=True)
    return model


def make_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


# ========================================================= evaluation =======
def tune_brightness(x: np.ndarray, y: np.ndarray) -> float:
    """Threshold t on mean(RGB) maximising pixel accuracy (histogram search)."""
    bright = x.mean(axis=1).ravel()
    yy = y.ravel().astype(bool)
    edges = np.linspace(0, 1, 401)
    hc, _ = np.histogram(bright[yy], edges)
    hn, _ = np.histogram(bright[~yy], edges)
    # predicting cloud for bins >= i: correct = clouds in bins >= i + clear in bins < i
    correct = np.concatenate([[0], np.cumsum(hn)]) + np.concatenate(
        [np.cumsum(hc[::-1])[::-1], [0]])
    return float(edges[int(np.argmax(correct))])


def saturation(x: np.ndarray) -> np.ndarray:
    mx, mn = x.max(axis=1), x.min(axis=1)
    return (mx - mn) / np.maximum(mx, 1e-6)


def tune_whiteness(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Thresholds (t_bright, t_sat): cloud iff mean RGB >= t_bright and HSV
    saturation < t_sat, maximising pixel accuracy (2-D histogram search)."""
    bright = x.mean(axis=1).ravel()
    sat = saturation(x).ravel()
    yy = y.ravel().astype(bool)
    be = np.linspace(0, 1, 201)
    se = np.linspace(0, 1, 201)
    hc, _, _ = np.histogram2d(bright[yy], sat[yy], [be, se])
    hn, _, _ = np.histogram2d(bright[~yy], sat[~yy], [be, se])

    def region(h):  # region[i, j] = count with bright bin >= i and sat bin < j
        r = np.cumsum(h[::-1], axis=0)[::-1]
        r = np.concatenate([r, np.zeros((1, r.shape[1]))], axis=0)
        return np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(r, axis=1)], axis=1)

    correct = region(hc) + (hn.sum() - region(hn))
    i, j = np.unravel_index(int(np.argmax(correct)), correct.shape)
    return float(be[i]), float(se[j])


def metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    pred = pred.astype(bool)
    y = y.astype(bool)
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    n = tp + fp + fn + tn
    div = lambda a, b: float(a / b) if b else None  # noqa: E731
    return dict(pixels=n, cloud_pixels=tp + fn, accuracy=div(tp + tn, n),
                cloud_iou=div(tp, tp + fp + fn), precision=div(tp, tp + fp),
                recall=div(tp, tp + fn), false_positive_rate=div(fp, fp + tn))


def r4(d):
    if isinstance(d, dict):
        return {k: r4(v) for k, v in d.items()}
    if isinstance(d, float):
        return round(d, 4)
    return d


def evaluate(pred: np.ndarray, frac: np.ndarray, data: dict) -> dict:
    """pred: bool [N, H, W]; frac: predicted cloud fraction per tile [N]."""
    y = data["cloud"]
    out = metrics(pred, y)
    true_frac = y.reshape(len(y), -1).mean(axis=1)
    out["cloud_fraction_mae"] = float(np.abs(frac - true_frac).mean())
    out["cloud_fraction_mae_pct_points"] = 100 * out["cloud_fraction_mae"]
    per = {}
    for k, name in enumerate(SURFACES):
        sel = data["surface"] == k
        per[f"over_{name}"] = metrics(pred[sel], y[sel])
    out["per_surface"] = per
    hard = {}
    for key in ("haze_clear", "shadow_clear"):
        sel = data[key]
        hard[key] = dict(pixels=int(sel.sum()),
                         flagged_as_cloud=float(pred[sel].mean()) if sel.any() else None)
    clear_snow = (data["surface"] == SNOW) & (y == 0)
    hard["clear_snow"] = dict(pixels=int(clear_snow.sum()),
                              flagged_as_cloud=float(pred[clear_snow].mean()))
    out["hard_negatives"] = hard
    return r4(out)


def run_ort(sess, x: np.ndarray, batch: int = 100) -> tuple[np.ndarray, np.ndarray]:
    ps, fs = [], []
    for i in range(0, len(x), batch):
        p, f = sess.run(list(OUTPUTS), {INPUT: x[i:i + batch]})
        ps.append(p)
        fs.append(f)
    return np.concatenate(ps), np.concatenate(fs)


# ========================================================= references =======
REF_CASES = (
    # name, h, w, scene overrides, description
    ("cumulus_over_land", 16, 16, dict(primary=LAND, secondary=False, cumulus=True, haze=False),
     "broken cumulus and its shadows over vegetated land"),
    ("snow_clear", 16, 16, dict(primary=SNOW, secondary=True, cumulus=False, haze=False),
     "snow/ice with another surface, no cloud (hard negative)"),
    ("haze_over_water", 16, 16, dict(primary=WATER, secondary=False, cumulus=False, haze=True),
     "thin cirrus/haze over water"),
    ("cloud_over_desert_8x12", 8, 12, dict(primary=DESERT, secondary=False, cumulus=True,
                                           haze=False),
     "cumulus over bright desert, non-square 8x12 tile (the minimum side)"),
)


def f32_list(a: np.ndarray):
    """Nested lists of the shortest decimals that parse back to the same float32."""
    if a.ndim == 0:
        return float(str(np.float32(a)))
    return [f32_list(s) for s in a]


# =============================================================== main =======
def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=HERE,
                    help="where 1/model.onnx, reference.json and evaluation.json go "
                         "(default: this folder)")
    ap.add_argument("--steps", type=int, default=STEPS,
                    help=f"training steps (default {STEPS}; use a small number for smoke tests)")
    args = ap.parse_args()
    out_dir: Path = args.out_dir
    (out_dir / "1").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    print(f"generating {N_TRAIN} training and {N_EVAL} held-out {TILE}x{TILE} tiles ...",
          flush=True)
    t0 = time.perf_counter()
    train_set = make_set(TRAIN_SEED, N_TRAIN, TILE, TILE)
    eval_set = make_set(EVAL_SEED, N_EVAL, TILE, TILE)
    eval_large = make_set(EVAL_SEED + 1, N_EVAL_LARGE, 64, 64)
    data_s = time.perf_counter() - t0
    print(f"  {data_s:.1f}s; training cloud pixel share "
          f"{train_set['cloud'].mean():.3f}", flush=True)

    print(f"training {args.steps} steps, batch {BATCH} ...", flush=True)
    params, log, train_s = train(train_set, args.steps)
    n_params = int(sum(w.size + b.size for w, b in params))

    model = build_onnx(params)
    onnx_path = out_dir / "1" / "model.onnx"
    onnx_bytes = model.SerializeToString()
    onnx_path.write_bytes(onnx_bytes)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    (out_dir / "1" / "model.onnx.sha256").write_text(f"{digest}  model.onnx\n")
    print(f"wrote {onnx_path} ({len(onnx_bytes)} bytes, {n_params} parameters), "
          f"sha256 {digest}", flush=True)

    # ---- onnxruntime vs JAX -------------------------------------------------
    sess = make_session(onnx_path)
    jparams = [(jnp.asarray(w), jnp.asarray(b)) for w, b in params]
    checks = {}

    def compare(x, label):
        p_o, f_o = sess.run(list(OUTPUTS), {INPUT: x})
        p_j, f_j = (np.asarray(a) for a in forward(jparams, jnp.asarray(x)))
        assert p_o.shape == (x.shape[0], 1) + x.shape[2:], (label, p_o.shape)
        assert f_o.shape == (x.shape[0], 1), (label, f_o.shape)
        diff = float(max(np.abs(p_o - p_j).max(), np.abs(f_o - f_j).max()))
        checks[label] = dict(shape=list(x.shape), max_abs_diff_ort_vs_jax=diff)
        if not diff < ORT_VS_JAX_ATOL:
            raise SystemExit(f"FAIL: onnxruntime vs JAX on {label}: max abs diff {diff}")
        return p_o, f_o

    cases = []
    for ci, (name, h, w, overrides, desc) in enumerate(REF_CASES):
        t = make_tile(np.random.default_rng([REF_SEED, ci]), h, w, **overrides)
        x = t["x"][None]
        p, f = compare(x, f"reference:{name}")
        cases.append(dict(
            name=name, description=desc, shape=list(x.shape), tile=f32_list(x),
            cloud_probability=f32_list(p), cloud_fraction=f32_list(f),
            label_cloud_mask=t["cloud"][None, None].tolist(),
            label_cloud_fraction=round(float(t["cloud"].mean()), 6)))

    big = make_tile(np.random.default_rng([REF_SEED, 100]), 64, 48)["x"][None]
    compare(big, "tile_64x48")
    trio = np.stack([make_tile(np.random.default_rng([REF_SEED, 200 + i]), 24, 40)["x"]
                     for i in range(3)])
    p3, f3 = compare(trio, "batch_of_3_24x40")
    one = [sess.run(list(OUTPUTS), {INPUT: trio[i:i + 1]}) for i in range(3)]
    bdiff = float(max(max(np.abs(p3[i] - one[i][0][0]).max(), np.abs(f3[i] - one[i][1][0]).max())
                      for i in range(3)))
    checks["batch_of_3_vs_one_by_one"] = dict(max_abs_diff=bdiff)
    if not bdiff < BATCH_VS_SINGLE_ATOL:
        raise SystemExit(f"FAIL: batch of 3 differs from one-by-one runs: {bdiff}")
    print(f"onnxruntime vs JAX ok: max diff "
          f"{max(c.get('max_abs_diff_ort_vs_jax', 0) for c in checks.values()):.2e}; "
          f"batch vs single {bdiff:.2e}", flush=True)

    ref = dict(
        model="1/model.onnx", sha256=digest, input=INPUT, outputs=list(OUTPUTS),
        atol=1e-5,
        note=("tile is [batch, 3, height, width] float32 red, green, blue reflectance; every "
              "value is a multiple of 2**-12, so the decimals are exact in float32. Outputs "
              "are onnxruntime's, written as the shortest decimals that parse back to the "
              "same float32. label_* are the synthetic ground truth (not what the model "
              "must output)."),
        cases=cases)
    (out_dir / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")

    # ---- held-out evaluation (of the shipped ONNX file) ----------------------
    print("evaluating on held-out tiles ...", flush=True)
    t_b = tune_brightness(train_set["x"], train_set["cloud"])
    t_wb, t_ws = tune_whiteness(train_set["x"], train_set["cloud"])
    p_eval, f_eval = run_ort(sess, eval_set["x"])
    x_e = eval_set["x"]
    pred_b = x_e.mean(axis=1) >= t_b
    pred_w = (x_e.mean(axis=1) >= t_wb) & (saturation(x_e) < t_ws)
    pred_m = p_eval[:, 0] > 0.5
    n_e = len(x_e)
    results = {
        "model": evaluate(pred_m, f_eval[:, 0], eval_set),
        "brightness_threshold": evaluate(pred_b, pred_b.reshape(n_e, -1).mean(axis=1),
                                         eval_set),
        "whiteness_threshold": evaluate(pred_w, pred_w.reshape(n_e, -1).mean(axis=1),
                                        eval_set),
    }
    results["model"]["cloud_fraction_mae_hard_mask"] = round(float(np.abs(
        pred_m.reshape(n_e, -1).mean(axis=1)
        - eval_set["cloud"].reshape(n_e, -1).mean(axis=1)).mean()), 4)
    p_large, f_large = run_ort(sess, eval_large["x"], batch=25)
    large = evaluate(p_large[:, 0] > 0.5, f_large[:, 0], eval_large)
    large = {k: large[k] for k in ("pixels", "accuracy", "cloud_iou", "precision", "recall",
                                   "cloud_fraction_mae")}
    for name in ("model", "brightness_threshold", "whiteness_threshold"):
        r = results[name]
        print(f"  {name:22s} acc {r['accuracy']:.4f}  IoU {r['cloud_iou']:.4f}  "
              f"P {r['precision']:.4f}  R {r['recall']:.4f}  "
              f"frac MAE {r['cloud_fraction_mae']:.4f}  "
              f"clear-snow FP {r['hard_negatives']['clear_snow']['flagged_as_cloud']:.4f}",
              flush=True)
    print(f"  model on 64x64 tiles   acc {large['accuracy']:.4f}  IoU {large['cloud_iou']:.4f}",
          flush=True)

    total_s = time.perf_counter() - t_start
    evaluation = dict(
        model_file="1/model.onnx", sha256=digest, size_bytes=len(onnx_bytes),
        parameters=n_params, opset=OPSET, ir_version=IR_VERSION,
        layers=[dict(in_channels=a, out_channels=b, kernel=k, dilation=d)
                for a, b, k, d in LAYERS],
        data=dict(
            generator="make_tile() in train.py (synthetic; see README.md)",
            train=dict(seed=TRAIN_SEED, tiles=N_TRAIN, size=[TILE, TILE],
                       cloud_pixel_share=round(float(train_set["cloud"].mean()), 4)),
            held_out=dict(seed=EVAL_SEED, tiles=N_EVAL, size=[TILE, TILE],
                          cloud_pixel_share=round(float(eval_set["cloud"].mean()), 4),
                          pixels_per_surface={s: int((eval_set["surface"] == k).sum())
                                              for k, s in enumerate(SURFACES)}),
            held_out_large=dict(seed=EVAL_SEED + 1, tiles=N_EVAL_LARGE, size=[64, 64]),
            label="cloud where total cloud opacity > 0.5 (thin haze below 0.5 is clear)"),
        training=dict(steps=args.steps, batch=BATCH, loss="binary cross-entropy (logits)",
                      optimizer=f"Adam (beta1 {BETA1}, beta2 {BETA2}, eps {ADAM_EPS}), "
                                f"{WARMUP}-step linear warm-up to {PEAK_LR}, cosine decay "
                                f"to {FINAL_LR}",
                      init_seed=INIT_SEED, batch_seed=BATCH_SEED, log=log),
        protocol=("Pixel metrics over all held-out pixels; the model's mask is "
                  "cloud_probability > 0.5. cloud_fraction_mae is the mean over tiles of "
                  "|predicted fraction - true fraction| (model: its cloud_fraction output; "
                  "baselines: share of flagged pixels). Baseline thresholds were chosen to "
                  "maximise pixel accuracy on the training tiles. per_surface splits pixels by "
                  "the ground surface under them. hard_negatives: share of clear pixels "
                  "flagged as cloud, among clear pixels under haze with opacity > 0.2, clear "
                  "pixels darkened > 20 % by cloud shadow, and clear snow pixels."),
        baselines=dict(
            brightness_threshold=dict(rule="mean(R,G,B) >= t", t=t_b),
            whiteness_threshold=dict(rule="mean(R,G,B) >= t_bright and "
                                          "(max-min)/max of RGB < t_sat",
                                     t_bright=t_wb, t_sat=t_ws)),
        results=results,
        model_on_64x64_tiles=large,
        checks=checks,
        environment=dict(python=platform.python_version(), jax=jax.__version__,
                         numpy=np.__version__, onnx=onnx.__version__,
                         onnxruntime=ort.__version__, machine=platform.machine()),
        timing_seconds=dict(data_generation=round(data_s, 1), training=round(train_s, 1),
                            total=round(total_s, 1),
                            note="wall time on one pinned CPU core; varies run to run"),
    )
    (out_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=1) + "\n")
    print(f"done in {total_s:.1f}s (training {train_s:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
