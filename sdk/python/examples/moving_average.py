"""A moving average in numpy: the smallest useful Orbit function in Python."""

import numpy as np

from orbit_function import TensorSpec, function


@function(
    name="py_moving_average",
    version="0.1.0",
    description="Simple moving average of a series (Python, numpy)",
    parameters={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "window": {
                "type": "integer",
                "minimum": 1,
                "default": 3,
                "x-orbit-maximum": "series_length",
                "description": "points in each average",
            },
        },
    },
    outputs=[TensorSpec("values", "FP64", [-1])],
    example={"data": [1, 2, 3, 4, 5, 6], "parameters": {"window": 3}},
)
def moving_average(series: np.ndarray, parameters: dict) -> dict:
    window = parameters["window"]
    return {"values": np.convolve(series, np.ones(window), mode="valid") / window}


if __name__ == "__main__":
    moving_average.main()
