"""Checking a job's parameters against the function's declared JSON Schema.

The gateway checks every job with the Rust checker before publishing it; a replica checks again
what it pulls off the bus (anything can publish on a subject). Each declared property is taken
from the request's `parameters`, else from its `metadata` (where the seed's clients put them),
else from its `default`, and an error names where the value came from (`parameters.window`,
`metadata.window`). Declarations should keep to the subset the Rust checker accepts
(docs/contract.md), or the gateway refuses the function. The Orbit keyword `x-orbit-maximum`
(`"series_length"` or `"series_length/N"`) bounds a value by the job's series.

Checks are memoised: a batch of jobs with the same parameters costs one check.
"""

from __future__ import annotations

from typing import Any, Optional

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .contract import FieldError, dumps

_MEMO_LIMIT = 4096


def _series_maximum(length: Optional[int], bound: Any, instance: Any, schema: Any):
    if length is None or not isinstance(instance, (int, float)) or isinstance(instance, bool):
        return
    divisor = 1
    if isinstance(bound, str) and bound.startswith("series_length/"):
        divisor = int(bound.split("/", 1)[1])
    limit = length // divisor
    if instance > limit:
        default = schema.get("default")
        hint = f" (it defaults to {default})" if default is not None else ""
        yield ValidationError(
            f"is {instance} but the series has only {length} values, so it may be at most "
            f"{limit}{hint}"
        )


def _check_bound(bound: Any) -> None:
    if bound == "series_length":
        return
    if isinstance(bound, str) and bound.startswith("series_length/"):
        tail = bound.split("/", 1)[1]
        if tail.isdigit() and int(tail) > 0:
            return
    raise ValueError('x-orbit-maximum must be "series_length" or "series_length/N"')


class ParameterSchema:
    """A compiled parameter schema."""

    def __init__(self, schema: dict[str, Any]):
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise ValueError('the top level must be {"type": "object", ...}')
        Draft202012Validator.check_schema(schema)
        self.schema = schema
        self.properties: dict[str, Any] = schema.get("properties", {})
        for name, node in self.properties.items():
            if isinstance(node, dict) and "x-orbit-maximum" in node:
                _check_bound(node["x-orbit-maximum"])
        self.closed = schema.get("additionalProperties") is False
        self.uses_length = "x-orbit-maximum" in dumps(schema).decode()
        self._series_length: Optional[int] = None
        keyword = lambda _v, bound, instance, node: _series_maximum(  # noqa: E731
            self._series_length, bound, instance, node
        )
        validator = jsonschema.validators.extend(Draft202012Validator, {"x-orbit-maximum": keyword})
        self._validator = validator(schema)
        for name, node in self.properties.items():
            if isinstance(node, dict) and "default" in node:
                errors = list(Draft202012Validator(node).iter_errors(node["default"]))
                if errors:
                    raise ValueError(f"/properties/{name}/default: {errors[0].message}")
        self._memo: dict[bytes, Any] = {}

    def apply(
        self,
        parameters: dict[str, Any],
        metadata: dict[str, Any],
        series_length: Optional[int],
    ) -> dict[str, Any]:
        """The parameters in canonical form (every declared property present, integral numbers
        of integer properties as ints), or FieldError naming the first problem."""
        relevant = {k: metadata[k] for k in self.properties if k in metadata}
        key = dumps(
            (parameters, relevant, series_length if self.uses_length else None)
        )
        memo = self._memo.get(key)
        if memo is None:
            memo = self._check(parameters, relevant, series_length)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = memo
        if isinstance(memo, FieldError):
            raise memo
        return dict(memo)

    def _check(self, parameters, metadata, series_length):
        if not isinstance(parameters, dict):
            return FieldError("parameters", "must be an object")
        if self.closed:
            for name in parameters:
                if name not in self.properties:
                    allowed = ", ".join(sorted(self.properties)) or "none"
                    return FieldError(
                        f"parameters.{name}", f"is not a parameter; the parameters are {allowed}"
                    )
        checked: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, node in self.properties.items():
            if name in parameters:
                value, sources[name] = parameters[name], "parameters"
            elif name in metadata:
                value, sources[name] = metadata[name], "metadata"
            elif isinstance(node, dict) and "default" in node:
                value, sources[name] = node["default"], "parameters"
            else:
                continue
            checked[name] = _canonical(value, node)
        for name, value in parameters.items():
            if name not in checked:
                checked[name] = value
                sources[name] = "parameters"
        self._series_length = series_length
        try:
            error = min(
                self._validator.iter_errors(checked),
                key=lambda e: (len(e.absolute_path) == 0, list(map(str, e.absolute_path))),
                default=None,
            )
        finally:
            self._series_length = None
        if error is None:
            return checked
        path = list(error.absolute_path)
        if not path:
            missing = _missing_property(error)
            if missing:
                return FieldError(f"parameters.{missing}", "is required")
            return FieldError("parameters", error.message)
        head = str(path[0])
        field = f"{sources.get(head, 'parameters')}.{head}"
        for part in path[1:]:
            field += f"[{part}]" if isinstance(part, int) else f".{part}"
        return FieldError(field, _message(error))


def _canonical(value: Any, node: Any) -> Any:
    """A float with an integral value becomes an int where the property is an integer."""
    if (
        isinstance(node, dict)
        and isinstance(value, float)
        and value.is_integer()
        and (node.get("type") == "integer" or (isinstance(node.get("type"), list) and "integer" in node["type"]))
    ):
        return int(value)
    return value


def _missing_property(error: ValidationError) -> Optional[str]:
    if error.validator == "required":
        message = error.message
        if message.startswith("'") and "'" in message[1:]:
            return message[1 : message.index("'", 1)]
    return None


def _message(error: ValidationError) -> str:
    """Words a client can act on, saying what is allowed."""
    kind, bound = error.validator, error.validator_value
    value = error.instance
    if kind == "minimum":
        return f"is {value}; it must be at least {bound}"
    if kind == "maximum":
        return f"is {value}; it must be at most {bound}"
    if kind == "exclusiveMinimum":
        return f"is {value}; it must be greater than {bound}"
    if kind == "exclusiveMaximum":
        return f"is {value}; it must be less than {bound}"
    if kind == "enum":
        return f"is {value!r}; it must be one of {', '.join(map(str, bound))}"
    if kind == "type":
        return f"is {value!r}; it must be of type {bound}"
    return error.message
