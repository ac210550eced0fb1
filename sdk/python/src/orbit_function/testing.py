"""What every function must pass before it is served, for a function's own unit tests: a
declaration the gateway accepts, an example request, and that example answered through the
same checks as a real job (the Rust runtime's `conformance::check`)."""

from __future__ import annotations

from typing import Any

from .contract import FieldError, JobFailure, dumps, loads
from .declaration import Function


class ConformanceError(AssertionError):
    pass


def check(function: Function) -> Any:
    """Runs the checks; returns what the function answers its example with."""
    descriptor = function.descriptor()
    if not descriptor["version"].strip():
        raise ConformanceError("descriptor: an empty version")
    loads(dumps(descriptor))
    if function.example is None:
        raise ConformanceError("the descriptor has no example request")
    try:
        job = function.prepare(loads(dumps(function.example)))
    except FieldError as err:
        raise ConformanceError(f"its own example is refused: {err}") from None
    [output] = function.run([job])
    if isinstance(output, JobFailure):
        raise ConformanceError(f"its own example fails: {output}")
    dumps(output)
    return output
