"""A function as its author writes it: a Python callable and its declaration.

The declaration is what Orbit knows of a function (name, version, description, the JSON Schema
of its parameters, its input and output tensors, limits, an example). The runtime publishes it
as the function's descriptor (`$SRV.INFO` and the catalog); the gateway checks requests against
it, and the runtime checks every job again before the callable sees it, so the callable gets a
checked job: a numpy series (or named numpy tensors) and its parameters with defaults filled in.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .contract import (
    MAX_SERIES_POINTS,
    FieldError,
    JobFailure,
    digest,
    dumps,
    is_name,
    is_version,
)
from .schema import ParameterSchema

PLATFORM = "python"

DTYPES: dict[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPE_OF = {np.dtype(v).str if v != "?" else "|b1": k for k, v in DTYPES.items()}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor a function takes or returns; a dimension of -1 is free."""

    name: str
    datatype: str
    shape: Sequence[int]

    def document(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def accepts(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape)
        )


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may carry."""

    min_series_length: int = 1
    max_series_length: int = MAX_SERIES_POINTS
    max_input_bytes: Optional[int] = None

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "min_series_length": self.min_series_length,
            "max_series_length": self.max_series_length,
        }
        if self.max_input_bytes is not None:
            out["max_input_bytes"] = self.max_input_bytes
        return out


@dataclass
class Job:
    """A job as a function sees it: checked against the declaration."""

    version: str
    parameters: dict[str, Any]
    #: The series of a series function (float64), else None.
    series: Optional[np.ndarray] = None
    #: The named tensors of a tensor function.
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""


Output = Union[dict, list, float, int, str, None]
OneCall = Callable[[np.ndarray, dict], Output]
BatchCall = Callable[[list[Job]], Sequence[Union[Output, JobFailure]]]


class Function:
    """A callable with its declaration; what `orbit_function.main` serves."""

    def __init__(
        self,
        call: Callable[..., Any],
        *,
        name: str,
        version: str,
        description: str,
        parameters: Optional[dict[str, Any]] = None,
        inputs: Optional[Sequence[TensorSpec]] = None,
        outputs: Sequence[TensorSpec] = (),
        limits: Limits = Limits(),
        example: Optional[dict[str, Any]] = None,
        batch: bool = False,
        tensor_input: bool = False,
    ):
        if not is_name(name):
            raise ValueError(f"function name {name!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        if not is_version(version):
            raise ValueError(f"version {version!r} must be 1 to 64 of A-Z a-z 0-9 . _ + -")
        if not 1 <= limits.min_series_length <= limits.max_series_length <= MAX_SERIES_POINTS:
            raise ValueError(f"series limits must satisfy 1 <= min <= max <= {MAX_SERIES_POINTS}")
        self._call = call
        self.name = name
        self.version = version
        self.description = description
        self.parameters = parameters or {"type": "object", "additionalProperties": False, "properties": {}}
        self.tensor_input = tensor_input
        if inputs is None:
            if tensor_input:
                raise ValueError("a tensor function declares its inputs")
            inputs = [TensorSpec("data", "FP64", [-1])]
        if not tensor_input and not (len(inputs) == 1 and len(inputs[0].shape) == 1):
            raise ValueError("a series function declares exactly one input of rank 1")
        for spec in list(inputs) + list(outputs):
            if spec.datatype not in DTYPES:
                raise ValueError(f"tensor {spec.name}: unknown datatype {spec.datatype}")
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.limits = limits
        self.example = example
        self.batch = batch
        self.schema = ParameterSchema(self.parameters)
        self.__doc__ = getattr(call, "__doc__", None)
        self.__wrapped__ = call

    def renamed(self, name: str) -> "Function":
        """The same function served under another name (`ORBIT_FUNCTION_NAME`)."""
        if not is_name(name):
            raise ValueError(f"function name {name!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        twin = copy.copy(self)
        twin.name = name
        return twin

    def descriptor(self) -> dict[str, Any]:
        """The descriptor document, its fields in the order the Rust contract writes them."""
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "platform": PLATFORM,
            "input": "tensors" if self.tensor_input else "series",
            "parameters": self.parameters,
            "inputs": [spec.document() for spec in self.inputs],
            "outputs": [spec.document() for spec in self.outputs],
            "limits": self.limits.document(),
        }
        if self.example is not None:
            out["example"] = self.example
        return out

    def descriptor_json(self) -> bytes:
        return dumps(self.descriptor())

    def digest(self) -> str:
        return digest(self.descriptor_json())

    # -- checking ---------------------------------------------------------------------------

    def prepare(self, document: dict[str, Any], job_id: str = "") -> Job:
        """Checks a request document (a job envelope or a sync call) and makes its job;
        raises FieldError naming the field at fault."""
        version = document.get("model_version")
        if version is not None and version != self.version:
            raise FieldError(
                "model_version", f"{self.name} has no version '{version}'; it serves {self.version}"
            )
        metadata = document.get("metadata") or {}
        parameters = document.get("parameters") or {}
        if not isinstance(metadata, dict):
            raise FieldError("metadata", "must be an object")
        if not isinstance(parameters, dict):
            raise FieldError("parameters", "must be an object")
        if self.tensor_input:
            tensors = self._check_tensors(document)
            checked = self.schema.apply(parameters, metadata, None)
            return Job(self.version, checked, None, tensors, metadata, job_id)
        series = self._check_series(document)
        checked = self.schema.apply(parameters, metadata, len(series))
        return Job(self.version, checked, series, {}, metadata, job_id)

    def _check_series(self, document: dict[str, Any]) -> np.ndarray:
        data = document.get("data")
        if data is None or (isinstance(data, list) and not data and (document.get("inputs") or document.get("tensors"))):
            if document.get("inputs") or document.get("tensors"):
                raise FieldError("inputs", f"{self.name} takes a series in data, not tensors")
            raise FieldError("data", f"is required: {self.name} takes a series")
        if not isinstance(data, list):
            raise FieldError("data", "must be a list of numbers")
        if not data:
            raise FieldError("data", "must contain at least one value")
        if len(data) > MAX_SERIES_POINTS:
            raise FieldError("data", f"has {len(data)} values; the maximum is {MAX_SERIES_POINTS}")
        try:
            series = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            index = next(
                i for i, v in enumerate(data) if isinstance(v, bool) or not isinstance(v, (int, float))
            )
            raise FieldError(f"data[{index}]", "must be a number") from None
        if series.ndim != 1:
            raise FieldError("data", "must be a flat list of numbers")
        finite = np.isfinite(series)
        if not finite.all():
            index = int(np.argmin(finite))
            raise FieldError(
                f"data[{index}]", "must be a finite number (NaN and infinity are not allowed)"
            )
        limits = self.limits
        if len(series) < limits.min_series_length:
            raise FieldError(
                "data",
                f"has {len(series)} values; {self.name} needs at least {limits.min_series_length}",
            )
        if len(series) > limits.max_series_length:
            raise FieldError(
                "data",
                f"has {len(series)} values; {self.name} takes at most {limits.max_series_length}",
            )
        return series

    def _check_tensors(self, document: dict[str, Any]) -> dict[str, np.ndarray]:
        wire = document.get("tensors") or document.get("inputs")
        field_name = "tensors" if document.get("tensors") else "inputs"
        if not wire:
            if document.get("data"):
                raise FieldError("data", f"{self.name} takes tensors in inputs, not a series in data")
            raise FieldError("inputs", f"is required: {self.name} takes tensors")
        if not isinstance(wire, list):
            raise FieldError(field_name, "must be a list of tensors")
        tensors: dict[str, np.ndarray] = {}
        total = 0
        for index, item in enumerate(wire):
            where = f"{field_name}[{index}]"
            name, array = decode_tensor(item, where)
            spec = next((s for s in self.inputs if s.name == name), None)
            if spec is None:
                names = ", ".join(s.name for s in self.inputs)
                raise FieldError(f"{where}.name", f"{self.name} has no input '{name}'; it takes {names}")
            if DATATYPE_OF.get(array.dtype.str) != spec.datatype:
                raise FieldError(f"{where}.datatype", f"must be {spec.datatype}")
            if not spec.accepts(array.shape):
                raise FieldError(f"{where}.shape", f"is {list(array.shape)}; {name} takes {list(spec.shape)}")
            tensors[name] = array
            total += array.nbytes
        for spec in self.inputs:
            if spec.name not in tensors:
                raise FieldError(field_name, f"input '{spec.name}' is missing")
        if self.limits.max_input_bytes is not None and total > self.limits.max_input_bytes:
            raise FieldError(field_name, f"carries {total} bytes; the most is {self.limits.max_input_bytes}")
        return tensors

    # -- calling ----------------------------------------------------------------------------

    def run(self, jobs: list[Job]) -> list[Union[Output, JobFailure]]:
        """One output (or failure) per job, in order. A job that raises fails alone: a batch
        function that raises is run again one job at a time to find which."""
        if not jobs:
            return []
        if not self.batch:
            return [_one(self._call, job, self.tensor_input) for job in jobs]
        try:
            outputs = list(self._call(jobs))
            if len(outputs) != len(jobs):
                raise JobFailure.function_error(
                    f"the batch function returned {len(outputs)} outputs for {len(jobs)} jobs"
                )
        except Exception as err:  # noqa: BLE001 - isolate the job at fault below
            if len(jobs) == 1:
                return [_failure(err)]
            return [out for job in jobs for out in self.run([job])]
        return [_checked_output(o) for o in outputs]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def main(self) -> None:
        """Serves this function (`python file.py [serve | describe | register]`)."""
        from .cli import main

        main(self)


def _one(call: Callable[..., Any], job: Job, tensor_input: bool) -> Union[Output, JobFailure]:
    try:
        return _checked_output(call(job.tensors if tensor_input else job.series, job.parameters))
    except Exception as err:  # noqa: BLE001 - a job's failure is reported, never raised
        return _failure(err)


def _failure(err: Exception) -> JobFailure:
    """What a job that raised `err` ends with: the function's own failure, or
    `function_error` naming the exception and where it was raised."""
    if isinstance(err, JobFailure):
        return err
    frame = traceback.extract_tb(err.__traceback__)[-1:] if err.__traceback__ else []
    where = f" (at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno})" if frame else ""
    return JobFailure.function_error(f"{type(err).__name__}: {err}{where}")


def _checked_output(output: Any) -> Union[Output, JobFailure]:
    if isinstance(output, JobFailure):
        return output
    if not _finite(output):
        return JobFailure("numeric_overflow", "the result is not finite (NaN or infinity)", "data")
    return output


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, np.ndarray):
        return value.dtype.kind not in "fc" or bool(np.isfinite(value).all())
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, np.floating):
        return bool(np.isfinite(value))
    return True


def decode_tensor(item: Any, where: str) -> tuple[str, np.ndarray]:
    """A tensor in the bus form (`b64`, little-endian bytes) or the JSON form (`data`)."""
    if not isinstance(item, dict):
        raise FieldError(where, "must be a tensor object")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str) or not name:
        raise FieldError(f"{where}.name", "is required")
    if datatype not in DTYPES:
        raise FieldError(f"{where}.datatype", f"must be one of {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FieldError(f"{where}.shape", "must be a list of non-negative integers")
    count = math.prod(shape)
    if "b64" in item:
        try:
            raw = base64.b64decode(item["b64"], validate=True)
        except (binascii.Error, TypeError):
            raise FieldError(f"{where}.b64", "is not base64") from None
        dtype = np.dtype(DTYPES[datatype])
        if len(raw) != count * dtype.itemsize:
            raise FieldError(f"{where}.b64", f"holds {len(raw)} bytes; shape {shape} of {datatype} needs {count * dtype.itemsize}")
        return name, np.frombuffer(raw, dtype=dtype).reshape(shape)
    try:
        array = np.asarray(item.get("data"), dtype=DTYPES[datatype]).reshape(shape)
    except (TypeError, ValueError):
        raise FieldError(f"{where}.data", f"must hold {count} {datatype} values for shape {shape}") from None
    return name, array


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """The bus form of a numpy array."""
    array = np.ascontiguousarray(array)
    datatype = DATATYPE_OF.get(array.dtype.newbyteorder("<").str if array.dtype.byteorder == ">" else array.dtype.str)
    if datatype is None:
        raise ValueError(f"tensor {name}: no Orbit datatype for {array.dtype}")
    data = array.astype(DTYPES[datatype], copy=False).tobytes()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "b64": base64.b64encode(data).decode()}


def function(
    *,
    name: str,
    version: str,
    description: str,
    parameters: Optional[dict[str, Any]] = None,
    inputs: Optional[Sequence[TensorSpec]] = None,
    outputs: Sequence[TensorSpec] = (),
    limits: Limits = Limits(),
    example: Optional[dict[str, Any]] = None,
    batch: bool = False,
    tensor_input: bool = False,
) -> Callable[[Callable[..., Any]], Function]:
    """Declares a function.

    The callable takes `(series, parameters)` (a float64 numpy array and a dict), or with
    `tensor_input=True` `(tensors, parameters)` (a dict of numpy arrays), and returns a
    JSON-able output (numpy arrays are fine) or raises `JobFailure`. With `batch=True` it takes
    a list of `Job`s instead and returns one output (or `JobFailure`) per job, in order.
    """

    def declare(call: Callable[..., Any]) -> Function:
        return Function(
            call,
            name=name,
            version=version,
            description=description,
            parameters=parameters,
            inputs=inputs,
            outputs=outputs,
            limits=limits,
            example=example,
            batch=batch,
            tensor_input=tensor_input,
        )

    return declare
