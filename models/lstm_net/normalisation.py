"""The caller-side normalisation contract of the LSTM model, shared by train.py and verify.py
(and implemented identically in Rust by the ONNX host's `processing::standardise`)."""

from __future__ import annotations

import math

import numpy as np


def normalise(window: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The caller-side normalisation contract (Rust implements the same).

    All arithmetic in float64; only the result is cast to float32.
      mean = sum(x) / n                           (sums left to right)
      std  = sqrt(sum((x - mean) * (x - mean)) / n)   (population std)
      std  = max(std, 1e-6 * max(1, |mean|))      (floor: constant windows)
      normalised = float32((x - mean) / std)
    Forecasts are denormalised as float64(forecast) * std + mean.
    The sums are plain left-to-right loops, not numpy's pairwise sum, so a
    Rust `iter().sum::<f64>()` reproduces mean and std bit for bit.
    """
    x = np.asarray(window, dtype=np.float64)
    values = x.tolist()
    total = 0.0
    for v in values:
        total += v
    mean = total / len(values)
    sq = 0.0
    for v in values:
        d = v - mean
        sq += d * d
    std = max(math.sqrt(sq / len(values)), 1e-6 * max(1.0, abs(mean)))
    return ((x - mean) / std).astype(np.float32), mean, std
