#!/usr/bin/env python3
"""Train Orbit's LSTM forecaster in JAX and export it as ONNX.

One run does everything, deterministically:
  1. loads real series bundled with statsmodels and splits off held-out parts,
  2. trains a one-layer LSTM + dense multi-horizon head on a mix of synthetic
     windows and windows from the real series' training parts,
  3. writes 1/model.onnx (hand-built with onnx.helper) and its sha256,
  4. checks onnxruntime against the JAX model on reference.json's cases,
  5. evaluates the shipped ONNX file on the held-out data against naive,
     seasonal-naive and moving-average baselines -> evaluation.json.

Run from the repository root:
  python3 models/lstm_net/train.py
See README.md in this folder for the contract and the measured numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

# Keep XLA on one core and deterministic; must be set before jax is imported.
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
import pandas as pd  # noqa: E402
import statsmodels  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from normalisation import normalise  # noqa: E402

HERE = Path(__file__).resolve().parent
# The model repository's layout: <name>/<version>/model.onnx, served by Orbit's ONNX host.
ONNX_PATH = HERE / "1" / "model.onnx"
SHA_PATH = HERE / "1" / "model.onnx.sha256"
EVAL_PATH = HERE / "evaluation.json"
REF_PATH = HERE / "reference.json"

# ---------------------------------------------------------------- contract --
HORIZON = 24  # forecast[:, 0] is the next value, forecast[:, 23] the 24th
MIN_LEN = 16
MAX_LEN = 256  # longest window trained on; longer windows still run
HIDDEN = 32
OPSET = 17
# IR 8 is what opset 17 shipped with; pinning it keeps the file loadable by
# older onnxruntime builds than the one used here.
IR_VERSION = 8

# ---------------------------------------------------------------- training --
SEED = 20240601
BATCH = 128
REAL_FRACTION = 0.375  # share of each batch drawn from real training parts
STEPS = 9000
PEAK_LR = 3e-3
FINAL_LR = 3e-5
WARMUP = 300
GRAD_CLIP = 1.0
BUCKET = 32  # batches are padded to a multiple of this; one compile per bucket
HOLDOUT_FRACTION = 0.2

# -------------------------------------------------------------- evaluation --
EVAL_LEN = 64
EVAL_STEP = 1  # every forecast origin in the held-out region
MA_POINTS = 5


# ------------------------------------------------------------- real series --
def _datasets_dir() -> Path:
    return Path(statsmodels.__file__).resolve().parent / "datasets"


def _fill_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs; edges take the nearest value."""
    s = pd.Series(x).interpolate(limit_direction="both")
    return s.to_numpy(dtype=np.float64)


def load_real_series() -> list[dict]:
    """Real series shipped inside the statsmodels wheel (no download).

    holdout="tail": train on the first 80 %, evaluate on forecasts whose
    targets all lie in the last 20 %.  holdout="whole": the series is never
    trained on (its 20 % tail would be shorter than the 24-step horizon).
    The season is what the seasonal-naive baseline repeats; 1 = no season.
    """
    d = _datasets_dir()
    out = []

    def add(name, values, season, freq, holdout, source):
        out.append(dict(name=name, values=np.asarray(values, dtype=np.float64),
                        season=season, freq=freq, holdout=holdout, source=source))

    co2 = pd.read_csv(d / "co2" / "co2.csv")["co2"].to_numpy(dtype=np.float64)
    add("co2", co2, 52, "weekly", "tail", "statsmodels/datasets/co2")
    sun = pd.read_csv(d / "sunspots" / "sunspots.csv")["SUNACTIVITY"]
    add("sunspots", sun, 11, "yearly", "tail", "statsmodels/datasets/sunspots")
    eln = pd.read_csv(d / "elnino" / "elnino.csv").drop(columns="YEAR")
    add("elnino", eln.to_numpy().ravel(), 12, "monthly", "tail",
        "statsmodels/datasets/elnino (row-major flatten of the year x month table)")
    elec = pd.read_csv(d / "elec_equip" / "elec_equip.csv").iloc[:, 1]
    add("elec_equip", elec, 12, "monthly", "tail", "statsmodels/datasets/elec_equip")
    macro = pd.read_csv(d / "macrodata" / "macrodata.csv")
    for col in ("realgdp", "cpi", "unemp", "tbilrate"):
        add(f"macro_{col}", macro[col], 4, "quarterly", "tail",
            f"statsmodels/datasets/macrodata column {col}")
    vic = pd.read_csv(Path(statsmodels.__file__).resolve().parent / "tsa" / "stl"
                      / "tests" / "results" / "mstl_elec_vic.csv")["y"]
    add("elec_vic", vic, 24, "hourly", "tail",
        "statsmodels/tsa/stl/tests/results/mstl_elec_vic.csv (Victoria electricity demand)")
    nile = pd.read_csv(d / "nile" / "nile.csv")["volume"]
    add("nile", nile, 1, "yearly", "whole", "statsmodels/datasets/nile")
    e6 = pd.read_csv(d / "interest_inflation" / "E6.csv")
    add("inflation_Dp", e6["Dp"], 4, "quarterly", "whole",
        "statsmodels/datasets/interest_inflation column Dp")
    add("interest_R", e6["R"], 4, "quarterly", "whole",
        "statsmodels/datasets/interest_inflation column R")

    for s in out:
        v = s["values"]
        if s["holdout"] == "tail":
            cut = int(round(len(v) * (1 - HOLDOUT_FRACTION)))
            # Gaps are filled within each part separately so no held-out value
            # leaks into the training part through the interpolation.
            s["train"] = _fill_gaps(v[:cut])
            s["full"] = np.concatenate([s["train"], _fill_gaps(v[cut:])])
            s["test_start"] = cut
        else:
            s["train"] = None
            s["full"] = _fill_gaps(v)
            s["test_start"] = 0
    return out


# -------------------------------------------------------- synthetic series --
def _unit(x: np.ndarray) -> np.ndarray:
    """Scale each row to unit std so component weights mean something."""
    x = x - x.mean(axis=1, keepdims=True)
    return x / (x.std(axis=1, keepdims=True) + 1e-9)


def _log_uniform(rng, lo, hi, size):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def synthetic_batch(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """b synthetic series of length n (float64).

    Each series picks a dominant pattern -- seasonal, trend, random walk,
    AR/quasi-cycle or a mix -- and adds the other components with smaller,
    random weights.  Scale and offset are irrelevant (windows are normalised),
    so only the components' relative sizes are drawn.
    """
    t = np.arange(n, dtype=np.float64)[None, :]
    u = t / n  # 0..1, for trend shapes independent of n

    # Seasonality: up to 3 components, each a sum of 4 harmonics with decaying
    # random amplitudes (non-sinusoidal shapes), optional phase drift
    # (quasi-periodic, sunspot-like) and amplitude modulation.
    seas = np.zeros((b, n))
    common = np.array([4, 6, 7, 11, 12, 24, 52])
    for comp in range(3):
        active = rng.random(b) < (1.0 if comp == 0 else 0.45)
        period = np.where(rng.random(b) < 0.65, rng.choice(common, b),
                          rng.uniform(2.5, 90.0, b))[:, None]
        decay = rng.uniform(0.3, 2.5, b)[:, None]
        drift = np.where(rng.random(b) < 0.3, rng.uniform(0.0, 0.08, b), 0.0)[:, None]
        phase_walk = np.cumsum(rng.normal(0, 1, (b, n)), axis=1) * drift
        shape = np.zeros((b, n))
        for k in range(1, 5):
            amp = rng.normal(0, 1, (b, 1)) / k ** decay
            shape += amp * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 2 * np.pi, (b, 1))
                                  + k * phase_walk)
        modulate = np.where(rng.random(b) < 0.3, rng.uniform(-1.5, 1.5, b), 0.0)[:, None]
        shape = _unit(shape) * np.clip(1 + modulate * (u - 0.5), 0.05, None)
        weight = (1.0 if comp == 0 else _log_uniform(rng, 0.1, 1.0, b))
        seas += np.where(active[:, None], _unit(shape) * np.atleast_1d(weight)[:, None], 0.0)

    # Trend: linear with optional curvature, exponential growth or a kink.
    slope = rng.normal(0, 1, (b, 1))
    trend = slope * u + rng.normal(0, 1, (b, 1)) * (rng.random((b, 1)) < 0.3) * u ** 2
    g = rng.uniform(-2.0, 4.0, (b, 1))
    trend = np.where(rng.random((b, 1)) < 0.2, np.exp(g * u), trend)
    kink_at = rng.uniform(0.2, 0.95, (b, 1))
    kink = rng.normal(0, 2, (b, 1)) * np.maximum(u - kink_at, 0)
    trend = trend + np.where(rng.random((b, 1)) < 0.25, kink, 0.0)

    # Random walks, sometimes integrated (smooth, GDP/CPI-like).
    walk = np.cumsum(rng.normal(0, 1, (b, n)), axis=1)
    walk = np.where(rng.random((b, 1)) < 0.2, np.cumsum(walk, axis=1), walk)

    # AR(1) or AR(2) with complex roots (damped quasi-cycles, El Nino-like).
    r = rng.uniform(0.7, 0.99, b)
    cyc = rng.uniform(5.0, 70.0, b)
    use_ar2 = rng.random(b) < 0.5
    phi1 = np.where(use_ar2, 2 * r * np.cos(2 * np.pi / cyc), rng.uniform(0.0, 0.98, b))
    phi2 = np.where(use_ar2, -r * r, 0.0)
    burn = 64
    e = rng.normal(0, 1, (b, n + burn))
    ar = np.zeros((b, n + burn))
    for i in range(2, n + burn):
        ar[:, i] = phi1 * ar[:, i - 1] + phi2 * ar[:, i - 2] + e[:, i]
    ar = ar[:, burn:]

    noise = rng.normal(0, 1, (b, n))
    # Occasional level shift.
    shift_at = rng.integers(1, n, b)[:, None]
    shift = (t >= shift_at) * rng.normal(0, 1, (b, 1))

    # Component weights by dominant pattern.
    pattern = rng.choice(5, b, p=[0.3, 0.15, 0.2, 0.15, 0.2])
    def w(lo, hi, p):
        return np.where(rng.random(b) < p, _log_uniform(rng, lo, hi, b), 0.0)
    ws = np.where(pattern == 0, 1.0, w(0.05, 1.0, 0.5))
    wt = np.where(pattern == 1, 1.0, w(0.05, 1.0, 0.4))
    ww = np.where(pattern == 2, 1.0, w(0.05, 0.7, 0.35))
    wa = np.where(pattern == 3, 1.0, w(0.05, 0.7, 0.3))
    mixed = pattern == 4
    ws = np.where(mixed, _log_uniform(rng, 0.1, 1.0, b), ws)
    wt = np.where(mixed, _log_uniform(rng, 0.05, 1.0, b), wt)
    ww = np.where(mixed, _log_uniform(rng, 0.05, 1.0, b), ww)
    wn = _log_uniform(rng, 0.005, 0.6, b)
    wl = np.where(rng.random(b) < 0.1, _log_uniform(rng, 0.2, 1.0, b), 0.0)

    x = (ws[:, None] * seas + wt[:, None] * _unit(trend) + ww[:, None] * _unit(walk)
         + wa[:, None] * _unit(ar) + wn[:, None] * noise + wl[:, None] * shift)
    # Multiplicative series (e.g. monthly sales growing with seasonal swing).
    expo = rng.random(b) < 0.15
    x = np.where(expo[:, None], np.exp(rng.uniform(0.2, 0.8, b)[:, None] * _unit(x)), x)
    return x


# ------------------------------------------------------------------ batches --
def make_batch(rng, real: list[dict], bucket_len: int):
    """Windows left-padded to bucket_len with a validity mask.

    Each sample gets its own length in (bucket_len - BUCKET, bucket_len] (at
    least MIN_LEN), so over all buckets every length 16..256 is trained on.
    Padding sits on the left and is masked: the recurrence starts from zero
    state at the first real point, exactly like an unpadded ONNX call.
    """
    lo = max(MIN_LEN, bucket_len - BUCKET + 1)
    lengths = rng.integers(lo, bucket_len + 1, BATCH)
    n_real = int(round(BATCH * REAL_FRACTION))
    series = synthetic_batch(rng, BATCH - n_real, bucket_len + HORIZON)
    train_parts = [s["train"] for s in real if s["train"] is not None]
    # Real series are picked with probability ~ sqrt(length): long series
    # are seen more, but short ones are not drowned out.
    p = np.sqrt([len(x) for x in train_parts])
    p /= p.sum()

    x = np.zeros((BATCH, bucket_len), np.float32)
    mask = np.zeros((BATCH, bucket_len), bool)
    y = np.zeros((BATCH, HORIZON), np.float32)
    scale = np.zeros(BATCH, np.float32)
    for i in range(BATCH):
        if i < BATCH - n_real:
            full = series[i]
            length = lengths[i]
            seg = full[len(full) - length - HORIZON:]
        else:
            part = train_parts[rng.choice(len(train_parts), p=p)]
            length = min(lengths[i], len(part) - HORIZON)
            start = rng.integers(0, len(part) - length - HORIZON + 1)
            seg = part[start:start + length + HORIZON]
        win, mean, std = normalise(seg[:length])
        x[i, bucket_len - length:] = win
        mask[i, bucket_len - length:] = True
        y[i] = (seg[length:] - mean) / std
        # In-sample naive one-step MAE in normalised units (the MASE scale).
        scale[i] = max(float(np.abs(np.diff(win)).mean()), 1e-3)
    return x, mask, y, scale


# --------------------------------------------------------------------- model --
def init_params(key) -> dict:
    """ONNX LSTM layout, gate order i, o, f, c (input, output, forget, cell)."""
    k = jax.random.split(key, 4)
    bound = 1.0 / math.sqrt(HIDDEN)
    u = lambda kk, shape: jax.random.uniform(kk, shape, jnp.float32, -bound, bound)
    wb = jnp.zeros(4 * HIDDEN, jnp.float32).at[2 * HIDDEN:3 * HIDDEN].set(1.0)  # forget bias
    return dict(
        W=u(k[0], (4 * HIDDEN, 1)),
        R=u(k[1], (4 * HIDDEN, HIDDEN)),
        Wb=wb,
        Rb=jnp.zeros(4 * HIDDEN, jnp.float32),
        Wd=u(k[2], (HIDDEN, HORIZON)) * 0.5,
        bd=jnp.zeros(HORIZON, jnp.float32),
    )


def forward(params: dict, x: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """x [B, T] normalised windows, mask [B, T] (left padding) -> [B, 24].

    The cell is ONNX LSTM with default activations and no peepholes:
      i = sig(x Wi + h Ri + Wbi + Rbi)    o = sig(x Wo + h Ro + Wbo + Rbo)
      f = sig(x Wf + h Rf + Wbf + Rbf)    c~ = tanh(x Wc + h Rc + Wbc + Rbc)
      C = f*C + i*c~                      H = o * tanh(C)
    """
    w = params["W"][:, 0]
    rt = params["R"].T
    bias = params["Wb"] + params["Rb"]

    def step(carry, inp):
        h, c = carry
        xt, mt = inp
        g = xt[:, None] * w[None, :] + h @ rt + bias
        i, o, f, cc = jnp.split(g, 4, axis=1)
        c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(cc)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        m = mt[:, None]
        return (jnp.where(m, h_new, h), jnp.where(m, c_new, c)), None

    b = x.shape[0]
    zero = jnp.zeros((b, HIDDEN), jnp.float32)
    (h, _), _ = jax.lax.scan(step, (zero, zero), (x.T, mask.T))
    return h @ params["Wd"] + params["bd"]


def loss_fn(params, x, mask, y, scale):
    err = jnp.abs(forward(params, x, mask) - y).mean(axis=1)
    # Half normalised MAE, half MASE (MAE over the window's naive step size,
    # capped so near-flat windows with a sudden jump cannot dominate): the
    # two metrics the model is judged by.
    return 0.5 * err.mean() + 0.5 * jnp.minimum(err / scale, 20.0).mean()


def lr_at(step: int, total: int) -> float:
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    frac = (step - WARMUP) / max(1, total - WARMUP)
    return FINAL_LR + 0.5 * (PEAK_LR - FINAL_LR) * (1 + math.cos(math.pi * frac))


@jax.jit
def train_step(params, opt, x, mask, y, scale, lr):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, mask, y, scale)
    gnorm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
    clip = jnp.minimum(1.0, GRAD_CLIP / (gnorm + 1e-12))
    grads = jax.tree_util.tree_map(lambda g: g * clip, grads)
    # Adam, written out to avoid another dependency.
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = opt["t"] + 1
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, opt["m"], grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, opt["v"], grads)
    corr = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    params = jax.tree_util.tree_map(
        lambda p, m, v: p - lr * corr * m / (jnp.sqrt(v) + eps), params, m, v)
    return params, dict(m=m, v=v, t=t), loss


def train(real: list[dict], steps: int) -> tuple[dict, list]:
    rng = np.random.default_rng(SEED)
    params = init_params(jax.random.PRNGKey(SEED))
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    opt = dict(m=zeros, v=zeros, t=jnp.zeros((), jnp.float32))
    buckets = list(range(BUCKET, MAX_LEN + 1, BUCKET))
    history = []
    running = None
    t0 = time.time()
    for step in range(steps):
        bucket_len = buckets[rng.integers(len(buckets))]
        x, mask, y, scale = make_batch(rng, real, bucket_len)
        params, opt, loss = train_step(params, opt, x, mask, y, scale,
                                       jnp.float32(lr_at(step, steps)))
        if step % 100 == 99 or step == steps - 1:
            loss = float(loss)
            running = loss if running is None else running
            history.append(dict(step=step + 1, loss=round(loss, 5)))
            print(f"step {step + 1:5d}  loss {loss:.4f}  lr {lr_at(step, steps):.2e}  "
                  f"{time.time() - t0:6.1f}s", flush=True)
    return jax.tree_util.tree_map(np.asarray, params), history


# ---------------------------------------------------------------------- onnx --
def export_onnx(params: dict, path: Path) -> None:
    f32 = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    inits = [
        numpy_helper.from_array(np.array([2], np.int64), "unsqueeze_axes"),
        numpy_helper.from_array(np.array([0], np.int64), "squeeze_axes"),
        numpy_helper.from_array(f32(params["W"])[None], "lstm_W"),  # [1, 4H, 1]
        numpy_helper.from_array(f32(params["R"])[None], "lstm_R"),  # [1, 4H, H]
        numpy_helper.from_array(f32(np.concatenate([params["Wb"], params["Rb"]]))[None],
                                "lstm_B"),  # [1, 8H]
        numpy_helper.from_array(f32(params["Wd"]), "dense_W"),  # [H, 24]
        numpy_helper.from_array(f32(params["bd"]), "dense_b"),  # [24]
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["window", "unsqueeze_axes"], ["window_3d"]),
        # ORT's CPU LSTM only implements layout=0 (sequence-major).
        helper.make_node("Transpose", ["window_3d"], ["seq_major"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["seq_major", "lstm_W", "lstm_R", "lstm_B"],
                         ["", "Y_h"], hidden_size=HIDDEN, direction="forward"),
        helper.make_node("Squeeze", ["Y_h", "squeeze_axes"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "dense_W"], ["dense"]),
        helper.make_node("Add", ["dense", "dense_b"], ["forecast"]),
    ]
    graph = helper.make_graph(
        nodes, "lstm_timeseries",
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", HORIZON])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="orbit-train", producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = ("Input window [batch, length>=16] normalised per row: (x - mean) / std, "
                        "population std floored at 1e-6*max(1,|mean|). Output forecast "
                        "[batch, 24] in the same units; denormalise with forecast*std+mean.")
    helper.set_model_props(model, {"horizon": str(HORIZON), "min_length": str(MIN_LEN),
                                   "trained_max_length": str(MAX_LEN),
                                   "hidden_size": str(HIDDEN)})
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())


def ort_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_forecast(sess, windows_norm: np.ndarray) -> np.ndarray:
    return sess.run(["forecast"], {"window": windows_norm.astype(np.float32)})[0]


# ---------------------------------------------------------------- reference --
def reference_windows(real: list[dict]) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(SEED + 1)
    by = {s["name"]: s for s in real}
    t = np.arange(256, dtype=np.float64)
    cases = [
        ("seasonal_16", 10 + 3 * np.sin(2 * np.pi * t[:16] / 7) + rng.normal(0, 0.2, 16)),
        ("constant_17", np.full(17, 42.5)),
        ("negative_31", -12 + 4 * np.sin(2 * np.pi * t[:31] / 12) + rng.normal(0, 0.5, 31)),
        ("co2_heldout_64", by["co2"]["full"][by["co2"]["test_start"]:][:64]),
        ("large_scale_100", 1e6 + 2e3 * t[:100] + 5e4 * np.sin(2 * np.pi * t[:100] / 24)
         + rng.normal(0, 3e3, 100)),
        ("random_walk_128", 50 + np.cumsum(rng.normal(0, 1, 128))),
        ("elec_vic_heldout_200", by["elec_vic"]["full"][by["elec_vic"]["test_start"]:][:200]),
        ("multi_seasonal_256", 100 + 0.05 * t + 5 * np.sin(2 * np.pi * t / 24)
         + 2 * np.sin(2 * np.pi * t / 7 + 1) + rng.normal(0, 0.5, 256)),
        ("zeros_48", np.zeros(48)),
        ("near_constant_large_24", 1e6 + rng.normal(0, 0.2, 24)),
    ]
    # Round-trip through float32 so the raw values are exactly representable
    # whether the caller holds them as f32 or f64.
    return [(name, w.astype(np.float32).astype(np.float64)) for name, w in cases]


def build_reference(sess, params, real) -> tuple[list[dict], float]:
    out, worst = [], 0.0
    for name, raw in reference_windows(real):
        norm, mean, std = normalise(raw)
        f_ort = ort_forecast(sess, norm[None])[0]
        f_jax = np.asarray(forward(params, jnp.asarray(norm[None]),
                                   jnp.ones((1, len(norm)), bool)))[0]
        worst = max(worst, float(np.max(np.abs(f_ort - f_jax))))
        out.append(dict(
            name=name,
            window=[float(v) for v in raw],
            normalised=[float(v) for v in norm],
            mean=mean,
            std=std,
            forecast_normalised=[float(v) for v in f_ort],
            forecast=[float(v) * std + mean for v in f_ort.astype(np.float64)],
        ))
    # A batch of mixed rows of one length must equal the rows run one by one.
    rows = np.stack([normalise(raw[:16])[0] for _, raw in reference_windows(real)])
    batched = ort_forecast(sess, rows)
    single = np.concatenate([ort_forecast(sess, r[None]) for r in rows])
    worst = max(worst, float(np.max(np.abs(batched - single))))
    return out, worst


# --------------------------------------------------------------- evaluation --
def eval_windows(s: dict, length: int = EVAL_LEN):
    """All (window, target) pairs whose 24 targets lie in the held-out part."""
    v = s["full"]
    first_origin = max(length, s["test_start"])
    origins = range(first_origin, len(v) - HORIZON + 1, EVAL_STEP)
    if len(origins) == 0:
        return None, None
    wins = np.stack([v[o - length:o] for o in origins])
    tgts = np.stack([v[o:o + HORIZON] for o in origins])
    return wins, tgts


def baseline_forecasts(wins: np.ndarray, season: int) -> dict:
    h = np.arange(1, HORIZON + 1)
    # Seasonal naive: the value one (or more) whole seasons before each target.
    back = season * np.ceil(h / season).astype(int)
    return dict(
        naive=np.repeat(wins[:, -1:], HORIZON, axis=1),
        seasonal_naive=wins[:, wins.shape[1] - back],
        moving_average=np.repeat(wins[:, -MA_POINTS:].mean(axis=1, keepdims=True),
                                 HORIZON, axis=1),
    )


def evaluate(sess, real: list[dict]) -> dict:
    methods = ["lstm", "naive", "seasonal_naive", "moving_average"]
    per_series = {}
    for s in real:
        wins, tgts = eval_windows(s)
        norm = [normalise(w) for w in wins]
        f = ort_forecast(sess, np.stack([n[0] for n in norm])).astype(np.float64)
        means = np.array([n[1] for n in norm])[:, None]
        stds = np.array([n[2] for n in norm])[:, None]
        preds = dict(lstm=f * stds + means, **baseline_forecasts(wins, s["season"]))
        # MASE scale: in-sample naive one-step MAE of each input window.
        naive_scale = np.maximum(np.abs(np.diff(wins, axis=1)).mean(axis=1), 1e-12)
        row = dict(frequency=s["freq"], season=s["season"], holdout=s["holdout"],
                   source=s["source"], length=len(s["values"]),
                   train_points=0 if s["train"] is None else len(s["train"]),
                   windows=len(wins))
        for m in methods:
            mae_w = np.abs(preds[m] - tgts).mean(axis=1)
            row[m] = dict(mae=float(mae_w.mean()),
                          mase=float((mae_w / naive_scale).mean()),
                          nmae=float((mae_w / stds[:, 0]).mean()))
        per_series[s["name"]] = row

    overall = {m: dict(mase=float(np.mean([r[m]["mase"] for r in per_series.values()])),
                       nmae=float(np.mean([r[m]["nmae"] for r in per_series.values()])))
               for m in methods}
    improvement = {}
    for b in methods[1:]:
        improvement[b] = {k: 100 * (1 - overall["lstm"][k] / overall[b][k])
                          for k in ("mase", "nmae")}
    wins = {b: dict(
        mae=[n for n, r in per_series.items() if r["lstm"]["mae"] < r[b]["mae"]],
        mase=[n for n, r in per_series.items() if r["lstm"]["mase"] < r[b]["mase"]])
        for b in methods[1:]}
    return dict(per_series=per_series, overall=overall,
                overall_improvement_percent=improvement, lstm_beats=wins,
                length_sweep=length_sweep(sess, real))


def length_sweep(sess, real: list[dict]) -> dict:
    """Secondary check that other window lengths work, not just the 64 used above.

    Only series with at least one full window of that length in the held-out
    protocol count, and the seasonal-naive baseline is left out because its
    season does not fit in the short windows.
    """
    out = {}
    for length in (16, 32, 64, 128, 256):
        rows = {}
        for s in real:
            wins, tgts = eval_windows(s, length)
            if wins is None:
                continue
            norm = [normalise(w) for w in wins]
            f = ort_forecast(sess, np.stack([n[0] for n in norm])).astype(np.float64)
            lstm = (f * np.array([n[2] for n in norm])[:, None]
                    + np.array([n[1] for n in norm])[:, None])
            base = baseline_forecasts(wins, 1)
            scale = np.maximum(np.abs(np.diff(wins, axis=1)).mean(axis=1), 1e-12)
            rows[s["name"]] = {m: float((np.abs(p - tgts).mean(axis=1) / scale).mean())
                               for m, p in (("lstm", lstm), ("naive", base["naive"]),
                                            ("moving_average", base["moving_average"]))}
        out[str(length)] = dict(
            series=sorted(rows),
            mase={m: float(np.mean([r[m] for r in rows.values()]))
                  for m in ("lstm", "naive", "moving_average")})
    return out


# --------------------------------------------------------------------- main --
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=STEPS,
                    help="training steps (smoke tests only; the shipped model uses the default)")
    ap.add_argument("--out-dir", type=Path, default=HERE,
                    help="where to write the artefacts (default: next to this script)")
    args = ap.parse_args()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "1").mkdir(parents=True, exist_ok=True)
    onnx_path = out / "1" / ONNX_PATH.name

    real = load_real_series()
    t0 = time.time()
    params, history = train(real, args.steps)
    train_seconds = time.time() - t0
    print(f"trained {args.steps} steps in {train_seconds:.1f}s", flush=True)

    export_onnx(params, onnx_path)
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    (out / "1" / SHA_PATH.name).write_text(f"{digest}  {ONNX_PATH.name}\n")
    sess = ort_session(onnx_path)

    ref, worst = build_reference(sess, params, real)
    print(f"onnxruntime vs JAX: max |diff| = {worst:.2e}", flush=True)
    if worst > 1e-5:
        print("ERROR: ONNX export does not match the JAX model", file=sys.stderr)
        return 1
    (out / REF_PATH.name).write_text(json.dumps(ref, indent=1) + "\n")

    ev = evaluate(sess, real)
    n_params = sum(int(np.asarray(p).size) for p in params.values())
    report = dict(
        model=dict(file=onnx_path.name, sha256=digest, bytes=onnx_path.stat().st_size,
                   parameters=n_params, hidden_size=HIDDEN, horizon=HORIZON,
                   opset=OPSET, ir_version=IR_VERSION),
        training=dict(steps=args.steps, batch=BATCH, real_fraction=REAL_FRACTION,
                      seed=SEED, seconds=round(train_seconds, 1),
                      final_loss=history[-1]["loss"], loss_history=history[::10]),
        protocol=dict(
            window_length=EVAL_LEN, horizon=HORIZON, origin_step=EVAL_STEP,
            holdout=("tail: train on the first 80 % of the series, forecast origins "
                     "in the last 20 % with all 24 targets inside it (the input window may "
                     "reach back into the training part); whole: never trained on, every "
                     "origin with a full 64-point window and 24 targets"),
            mae="mean over windows of mean_h |y - yhat| in the series' own units",
            mase=("mean over windows of MAE / (mean |x_t - x_{t-1}| over the 64-point "
                  "input window), i.e. scaled by the in-sample naive one-step MAE"),
            nmae="mean over windows of MAE / std of the input window (scale-free)",
            overall="unweighted mean over series of the per-series MASE / nMAE",
            baselines=dict(naive="last value repeated",
                           seasonal_naive="y[T+h-s*ceil(h/s)], s = the series' season",
                           moving_average=f"mean of the last {MA_POINTS} values repeated"),
        ),
        onnx_vs_jax_max_abs_diff=worst,
        **ev,
    )
    (out / EVAL_PATH.name).write_text(json.dumps(report, indent=1) + "\n")

    print(f"{'series':18s} {'lstm':>8s} {'naive':>8s} {'snaive':>8s} {'ma5':>8s}   (MASE)")
    for name, r in ev["per_series"].items():
        print(f"{name:18s} " + " ".join(f"{r[m]['mase']:8.3f}" for m in
                                         ("lstm", "naive", "seasonal_naive", "moving_average")))
    print(f"{'OVERALL':18s} " + " ".join(f"{ev['overall'][m]['mase']:8.3f}" for m in
                                         ("lstm", "naive", "seasonal_naive", "moving_average")))
    print("improvement %:", json.dumps(ev["overall_improvement_percent"]))
    for length, r in ev["length_sweep"].items():
        print(f"length {length:>3s}: MASE " + json.dumps(r["mase"]) + f" over {len(r['series'])} series")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
