"""Anomalies in a series: robust residuals of a median trend and a seasonal profile.

What a team watching metrics brings: each point is compared with what the series says it
should be (a rolling median for the level, the median of each position in the season for the
seasonal shape), and a point whose residual is far from the others, measured in median
absolute deviations (Iglewicz and Hoaglin's modified z-score), is an anomaly. Medians rather
than means, so the anomalies themselves do not drag the expectation towards them.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from orbit_function import JobFailure, Limits, TensorSpec, function

# The modified z-score's constant: 0.6745 is the 75th percentile of the standard normal, so a
# score is in standard deviations for normally distributed residuals.
CONSISTENCY = 0.6745


def rolling_median(series: np.ndarray, window: int) -> np.ndarray:
    """Centred rolling median; the ends repeat the nearest full window's edge values."""
    half = window // 2
    padded = np.pad(series, (half, window - 1 - half), mode="edge")
    return np.median(sliding_window_view(padded, window), axis=1)


def seasonal_profile(detrended: np.ndarray, season_length: int) -> np.ndarray:
    """The median of each position in the season, centred on zero, repeated over the series."""
    n = len(detrended)
    cycles = -(-n // season_length)
    padded = np.full(cycles * season_length, np.nan)
    padded[:n] = detrended
    profile = np.nanmedian(padded.reshape(cycles, season_length), axis=0)
    profile -= np.median(profile)
    return np.tile(profile, cycles)[:n]


@function(
    name="anomaly",
    version="0.1.0",
    description="Anomalies in a series: modified z-scores of residuals from a rolling-median "
    "trend and a seasonal profile (Python, numpy)",
    parameters={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "window": {
                "type": "integer",
                "minimum": 3,
                "maximum": 1001,
                "default": 7,
                "x-orbit-maximum": "series_length",
                "description": "points in the rolling median that sets the level",
            },
            "season_length": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "x-orbit-maximum": "series_length/2",
                "description": "points per season (0: no season); two full seasons needed",
            },
            "threshold": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 100,
                "default": 3.5,
                "description": "modified z-score above which a point is an anomaly",
            },
        },
    },
    outputs=[
        TensorSpec("anomalies", "INT64", [-1]),
        TensorSpec("scores", "FP64", [-1]),
        TensorSpec("expected", "FP64", [-1]),
    ],
    limits=Limits(min_series_length=5),
    example={
        "data": [10, 11, 10, 12, 11, 10, 48, 11, 12, 10, 11, 10, 12, 11, 10, 11],
        "parameters": {"window": 5, "threshold": 3.5},
    },
)
def anomaly(series: np.ndarray, parameters: dict) -> dict:
    window, season = parameters["window"], parameters["season_length"]
    if season == 1:
        raise JobFailure("invalid_input", "must be 0 (no season) or at least 2", "parameters.season_length")
    expected = rolling_median(series, window)
    if season >= 2:
        expected = expected + seasonal_profile(series - expected, season)
    residuals = series - expected
    spread = np.median(np.abs(residuals - np.median(residuals)))
    if spread == 0:
        # Over half the residuals are equal: fall back to the mean absolute deviation.
        spread = np.mean(np.abs(residuals - np.median(residuals))) / 0.7979
    if spread == 0:
        scores = np.zeros_like(residuals)
    else:
        scores = CONSISTENCY * (residuals - np.median(residuals)) / spread
    anomalies = np.flatnonzero(np.abs(scores) > parameters["threshold"])
    return {"anomalies": anomalies, "scores": scores, "expected": expected}


if __name__ == "__main__":
    anomaly.main()
