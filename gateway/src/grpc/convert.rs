//! The gRPC door's messages to and from the shapes the HTTP `/v2` door uses
//! ([`InferRequest`], [`Tensor`]), so both run the same code past decoding.
//!
//! Inputs come as `raw_input_contents` (one little-endian blob per input, in order; what
//! tritonclient and perf_analyzer send) or as typed `contents`; outputs always go back as
//! `raw_output_contents`, as Triton answers. Parameters map onto JSON values, so a function's
//! parameters are checked against its schema exactly as on `/v2`.

use bytes::{BufMut, Bytes, BytesMut};
use orbit_contract::{Datatype, FieldError, Tensor};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use triton_proto::infer_parameter::ParameterChoice;
use triton_proto::model_infer_request::InferInputTensor;
use triton_proto::model_infer_response::InferOutputTensor;
use triton_proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};

use crate::routes::v2::codec::{self, InferRequest, RequestedOutput};
use crate::routes::v2::Inferred;

/// A request's parameters as JSON values.
pub fn parameters_to_json(parameters: &HashMap<String, InferParameter>) -> Map<String, Value> {
    parameters
        .iter()
        .map(|(name, parameter)| {
            let value = match &parameter.parameter_choice {
                Some(ParameterChoice::BoolParam(b)) => json!(b),
                Some(ParameterChoice::Int64Param(i)) => json!(i),
                Some(ParameterChoice::Uint64Param(u)) => json!(u),
                Some(ParameterChoice::DoubleParam(d)) => json!(d),
                Some(ParameterChoice::StringParam(s)) => json!(s),
                None => Value::Null,
            };
            (name.clone(), value)
        })
        .collect()
}

fn parameter_of(value: &Value) -> InferParameter {
    let choice = match value {
        Value::Bool(b) => ParameterChoice::BoolParam(*b),
        Value::Number(n) if n.is_i64() => ParameterChoice::Int64Param(n.as_i64().unwrap_or(0)),
        Value::Number(n) if n.is_u64() => ParameterChoice::Uint64Param(n.as_u64().unwrap_or(0)),
        Value::Number(n) => ParameterChoice::DoubleParam(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => ParameterChoice::StringParam(s.clone()),
        other => ParameterChoice::StringParam(other.to_string()),
    };
    InferParameter {
        parameter_choice: Some(choice),
    }
}

/// Decodes a `ModelInferRequest` into the `/v2` door's request.
pub fn decode(request: ModelInferRequest) -> Result<InferRequest, FieldError> {
    let mut parameters = parameters_to_json(&request.parameters);
    let protocol = codec::take_protocol_parameters(&mut parameters)?;
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(FieldError::new(
            "raw_input_contents",
            format!(
                "holds {} tensors but the request has {} inputs; give one per input, in order",
                raw.len(),
                request.inputs.len()
            ),
        ));
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (index, input) in request.inputs.into_iter().enumerate() {
        let field = format!("inputs[{index}]");
        inputs.push(decode_input(input, raw.next(), &field)?);
    }
    let outputs = if request.outputs.is_empty() {
        None
    } else {
        let mut outputs = Vec::with_capacity(request.outputs.len());
        for (index, output) in request.outputs.into_iter().enumerate() {
            let field = format!("outputs[{index}].parameters");
            codec::check_output_parameters(&parameters_to_json(&output.parameters), &field)?;
            outputs.push(RequestedOutput {
                name: output.name,
                binary: Some(true),
            });
        }
        Some(outputs)
    };
    Ok(InferRequest {
        id: (!request.id.is_empty()).then_some(request.id),
        parameters,
        inputs,
        outputs,
        binary_data_output: protocol.binary_data_output,
        timeout: protocol.timeout,
    })
}

fn decode_input(
    input: InferInputTensor,
    raw: Option<Bytes>,
    field: &str,
) -> Result<Tensor, FieldError> {
    let (datatype, shape) = codec::datatype_and_shape(&input.datatype, &input.shape, field)?;
    codec::check_input_parameters(&parameters_to_json(&input.parameters), field)?;
    let data = match (raw, input.contents) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                format!("{field}.contents"),
                "give either contents or raw_input_contents, not both",
            ))
        }
        (Some(raw), None) => raw,
        (None, Some(contents)) => typed_bytes(datatype, &contents, field)?,
        (None, None) => {
            return Err(FieldError::new(
                format!("{field}.contents"),
                "is required (or raw_input_contents)",
            ))
        }
    };
    Tensor::from_bytes(input.name, datatype, shape, data, field)
}

/// The little-endian bytes of typed contents, from the field the protocol assigns to
/// `datatype`, each value checked to fit it.
fn typed_bytes(
    datatype: Datatype,
    contents: &InferTensorContents,
    field: &str,
) -> Result<Bytes, FieldError> {
    let out_of_range = |name: &str, i: usize| {
        FieldError::new(
            format!("{field}.contents.{name}[{i}]"),
            format!("does not fit {datatype}"),
        )
    };
    let mut bytes = BytesMut::new();
    match datatype {
        Datatype::Bool => contents
            .bool_contents
            .iter()
            .for_each(|b| bytes.put_u8(u8::from(*b))),
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => {
            for (i, &v) in contents.int_contents.iter().enumerate() {
                match datatype {
                    Datatype::Int8 => {
                        bytes.put_i8(i8::try_from(v).map_err(|_| out_of_range("int_contents", i))?)
                    }
                    Datatype::Int16 => bytes
                        .put_i16_le(i16::try_from(v).map_err(|_| out_of_range("int_contents", i))?),
                    _ => bytes.put_i32_le(v),
                }
            }
        }
        Datatype::Int64 => contents
            .int64_contents
            .iter()
            .for_each(|v| bytes.put_i64_le(*v)),
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => {
            for (i, &v) in contents.uint_contents.iter().enumerate() {
                match datatype {
                    Datatype::Uint8 => {
                        bytes.put_u8(u8::try_from(v).map_err(|_| out_of_range("uint_contents", i))?)
                    }
                    Datatype::Uint16 => bytes.put_u16_le(
                        u16::try_from(v).map_err(|_| out_of_range("uint_contents", i))?,
                    ),
                    _ => bytes.put_u32_le(v),
                }
            }
        }
        Datatype::Uint64 => contents
            .uint64_contents
            .iter()
            .for_each(|v| bytes.put_u64_le(*v)),
        Datatype::Fp32 => contents
            .fp32_contents
            .iter()
            .for_each(|v| bytes.put_f32_le(*v)),
        Datatype::Fp64 => contents
            .fp64_contents
            .iter()
            .for_each(|v| bytes.put_f64_le(*v)),
    }
    Ok(bytes.freeze())
}

/// The response to `request_id` on `model`: outputs as raw contents, in order.
pub fn encode(model: &str, request_id: Option<String>, inferred: Inferred) -> ModelInferResponse {
    let parameters = inferred
        .parameters()
        .iter()
        .map(|(name, value)| (name.clone(), parameter_of(value)))
        .collect();
    let mut outputs = Vec::with_capacity(inferred.outputs.len());
    let mut raw = Vec::with_capacity(inferred.outputs.len());
    for tensor in inferred.outputs {
        outputs.push(InferOutputTensor {
            name: tensor.name().to_string(),
            datatype: tensor.datatype().as_str().to_string(),
            shape: tensor.shape().iter().map(|&d| d as i64).collect(),
            parameters: HashMap::new(),
            contents: None,
        });
        raw.push(tensor.bytes().clone());
    }
    ModelInferResponse {
        model_name: model.to_string(),
        model_version: inferred.version,
        id: request_id.unwrap_or_default(),
        parameters,
        outputs,
        raw_output_contents: raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> InferParameter {
        InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(i)),
        }
    }

    fn input(
        datatype: &str,
        shape: Vec<i64>,
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: "data".into(),
            datatype: datatype.into(),
            shape,
            parameters: HashMap::new(),
            contents,
        }
    }

    #[test]
    fn raw_and_typed_inputs_decode_alike() {
        let values = [1.5f32, -2.0, 3.25];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut request = ModelInferRequest {
            id: "r-1".into(),
            parameters: HashMap::from([
                ("window".to_string(), int(3)),
                ("timeout".to_string(), int(5000)),
            ]),
            inputs: vec![input("FP32", vec![3], None)],
            raw_input_contents: vec![Bytes::from(raw)],
            ..Default::default()
        };
        let from_raw = decode(request.clone()).expect("raw decodes");
        assert_eq!(from_raw.inputs[0].to_f32(), values.to_vec());
        assert_eq!(
            Value::Object(from_raw.parameters.clone()),
            json!({"window": 3})
        );
        assert_eq!(from_raw.timeout, Some(std::time::Duration::from_millis(5)));
        assert_eq!(from_raw.id.as_deref(), Some("r-1"));

        request.raw_input_contents.clear();
        request.inputs[0].contents = Some(InferTensorContents {
            fp32_contents: values.to_vec(),
            ..Default::default()
        });
        assert_eq!(
            decode(request).expect("typed decodes").inputs,
            from_raw.inputs
        );
    }

    #[test]
    fn mismatches_name_their_field() {
        let bad = |request: ModelInferRequest| decode(request).unwrap_err().field;
        let typed = |contents: InferTensorContents, datatype: &str, n: i64| ModelInferRequest {
            inputs: vec![input(datatype, vec![n], Some(contents))],
            ..Default::default()
        };
        assert_eq!(
            bad(typed(
                InferTensorContents {
                    int_contents: vec![1, 300],
                    ..Default::default()
                },
                "INT8",
                2
            )),
            "inputs[0].contents.int_contents[1]"
        );
        assert_eq!(
            bad(typed(
                InferTensorContents {
                    fp64_contents: vec![1.0],
                    ..Default::default()
                },
                "FP64",
                2
            )),
            "inputs[0]"
        );
        assert_eq!(
            bad(ModelInferRequest {
                inputs: vec![input("FP64", vec![1], None)],
                ..Default::default()
            }),
            "inputs[0].contents"
        );
        assert_eq!(
            bad(ModelInferRequest {
                inputs: vec![input("FP64", vec![1], None)],
                raw_input_contents: vec![Bytes::new(), Bytes::new()],
                ..Default::default()
            }),
            "raw_input_contents"
        );
        assert_eq!(
            bad(ModelInferRequest {
                parameters: HashMap::from([("sequence_id".to_string(), int(4))]),
                ..Default::default()
            }),
            "parameters.sequence_id"
        );
    }

    #[test]
    fn outputs_go_back_raw_with_the_job_ids() {
        let inferred = Inferred {
            outputs: vec![Tensor::from_f64("values", vec![2], &[1.0, 2.0]).unwrap()],
            job_ids: vec!["a".into()],
            version: "1".into(),
            failed: Vec::new(),
        };
        let response = encode("m", Some("x".into()), inferred);
        assert_eq!(response.id, "x");
        assert_eq!(response.outputs[0].shape, vec![2]);
        assert_eq!(response.raw_output_contents[0].len(), 16);
        assert_eq!(
            response.parameters["job_id"].parameter_choice,
            Some(ParameterChoice::StringParam("a".into()))
        );
        assert!(!response.parameters.contains_key("failed"));
    }

    #[test]
    fn failed_rows_of_a_panel_are_named_in_a_string_parameter() {
        let inferred = Inferred {
            outputs: vec![Tensor::from_f64("values", vec![2, 1], &[1.0, f64::NAN]).unwrap()],
            job_ids: vec!["p-0".into(), "p-1".into()],
            version: "1".into(),
            failed: vec![crate::routes::v2::FailedRow {
                index: 1,
                error: crate::error::ApiError::Invalid(FieldError::new(
                    "inputs[0][1][0]",
                    "must be a finite number",
                )),
            }],
        };
        let response = encode("m", None, inferred);
        let Some(ParameterChoice::StringParam(failed)) =
            &response.parameters["failed"].parameter_choice
        else {
            panic!(
                "failed is not a string: {:?}",
                response.parameters["failed"]
            );
        };
        let failed: serde_json::Value = serde_json::from_str(failed).unwrap();
        assert_eq!(failed[0]["index"], 1);
        assert_eq!(
            failed[0]["error"],
            "inputs[0][1][0]: must be a finite number"
        );
        assert_eq!(
            response.parameters["job_ids"].parameter_choice,
            Some(ParameterChoice::StringParam("p-0,p-1".into()))
        );
    }
}
