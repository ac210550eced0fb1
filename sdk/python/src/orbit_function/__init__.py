"""Orbit functions in Python.

A function is a callable plus its declaration::

    from orbit_function import function

    @function(name="py_moving_average", version="0.1.0", description="...",
              parameters={...}, example={"data": [1, 2, 3], "parameters": {"window": 2}})
    def moving_average(series, parameters):
        ...

    if __name__ == "__main__":
        moving_average.main()

and the runtime (`orbit_function.replica`) serves it on Orbit's contract like a Rust function:
discovery, the durable queue `fn-<name>`, sync calls, results, dead letters, metrics, logs.
"""

from .contract import FieldError, JobFailure
from .declaration import Function, Job, Limits, TensorSpec, function
from .cli import main

__all__ = ["FieldError", "Function", "Job", "JobFailure", "Limits", "TensorSpec", "function", "main"]
__version__ = "0.1.0"
