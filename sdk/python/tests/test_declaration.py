"""Declarations, input checks and calling: what a function's job looks like once checked."""

import base64

import numpy as np
import pytest

import anomaly
import moving_average
from orbit_function import FieldError, JobFailure, TensorSpec, contract, function
from orbit_function.testing import check


def test_the_examples_conform():
    assert list(check(moving_average.moving_average)["values"]) == [2.0, 3.0, 4.0, 5.0]
    found = check(anomaly.anomaly)
    assert list(found["anomalies"]) == [6]


def test_the_descriptor_has_the_contracts_fields_in_order_and_a_stable_digest():
    descriptor = moving_average.moving_average.descriptor()
    assert list(descriptor) == [
        "name", "version", "description", "platform", "input", "parameters", "inputs", "outputs", "limits", "example",
    ]
    assert descriptor["platform"] == "python"
    assert descriptor["inputs"] == [{"name": "data", "datatype": "FP64", "shape": [-1]}]
    assert moving_average.moving_average.digest() == contract.digest(contract.dumps(descriptor))


def test_series_are_checked_and_named_at_fault():
    fn = moving_average.moving_average
    cases = [
        ({}, "data"),
        ({"data": []}, "data"),
        ({"data": [1, "x"]}, "data[1]"),
        ({"data": [1, None, 2]}, "data[1]"),
        ({"data": [1, 2], "parameters": {"window": 3}}, "parameters.window"),
        ({"data": [1, 2], "model_version": "9"}, "model_version"),
    ]
    for document, expected in cases:
        with pytest.raises(FieldError) as caught:
            fn.prepare(document)
        assert caught.value.field == expected, document
    job = fn.prepare({"data": [1, 2, 3], "metadata": {"window": 2}})
    assert job.parameters == {"window": 2} and job.series.dtype == np.float64


def test_limits_apply():
    with pytest.raises(FieldError) as caught:
        anomaly.anomaly.prepare({"data": [1, 2, 3]})
    assert "at least 5" in caught.value.message


def test_failures_stay_with_their_job():
    @function(name="fragile", version="1", description="fails on negative input")
    def fragile(series, parameters):
        if series[0] < 0:
            raise ValueError("negative")
        if series[0] == 0:
            raise JobFailure("invalid_input", "zero", "data[0]")
        if series[0] == 1:
            return {"x": float("inf")}
        return {"x": float(series[0])}

    jobs = [fragile.prepare({"data": [v]}) for v in (2, -1, 0, 1)]
    outputs = fragile.run(jobs)
    assert outputs[0] == {"x": 2.0}
    assert outputs[1].code == "function_error" and "negative" in outputs[1].message
    assert outputs[2] == JobFailure("invalid_input", "zero", "data[0]")
    assert outputs[3].code == "numeric_overflow"


def test_a_batch_function_gets_every_job_and_a_failing_batch_is_split():
    calls = []

    @function(name="batched", version="1", description="sums", batch=True)
    def batched(jobs):
        calls.append(len(jobs))
        if any(job.series[0] < 0 for job in jobs):
            raise ValueError("negative")
        return [{"sum": float(job.series.sum())} for job in jobs]

    outputs = batched.run([batched.prepare({"data": [v, 1]}) for v in (1, 2, -3)])
    assert outputs[0] == {"sum": 2.0} and outputs[1] == {"sum": 3.0}
    assert isinstance(outputs[2], JobFailure) and "negative" in outputs[2].message
    # The whole batch once, then each job once: the job at fault is not run a third time.
    assert calls == [3, 1, 1, 1]


def test_tensors_arrive_as_numpy_in_either_wire_form():
    @function(
        name="tiles",
        version="1",
        description="means of tiles",
        tensor_input=True,
        inputs=[TensorSpec("tile", "FP32", [-1, 2])],
    )
    def tiles(tensors, parameters):
        return {"mean": float(tensors["tile"].mean())}

    raw = np.array([[1, 2], [3, 4]], dtype="<f4")
    bus = {"name": "tile", "datatype": "FP32", "shape": [2, 2], "b64": base64.b64encode(raw.tobytes()).decode()}
    as_json = {"name": "tile", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    for document in ({"tensors": [bus]}, {"inputs": [as_json]}):
        [output] = tiles.run([tiles.prepare(document)])
        assert output == {"mean": 2.5}
    with pytest.raises(FieldError) as caught:
        tiles.prepare({"inputs": [dict(as_json, shape=[4, 1], data=[1, 2, 3, 4])]})
    assert caught.value.field == "inputs[0].shape"
    with pytest.raises(FieldError) as caught:
        tiles.prepare({"data": [1, 2]})
    assert caught.value.field == "data"


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError):
        function(name="bad name", version="1", description="")(lambda s, p: {})
    with pytest.raises(ValueError):
        function(name="ok", version="", description="")(lambda s, p: {})
