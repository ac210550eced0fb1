//! The Open Inference Protocol's infer messages, in JSON and with Triton's binary tensor data
//! extension, in both directions.
//!
//! A binary request is a JSON header of `Inference-Header-Content-Length` bytes followed by
//! the raw little-endian data of every input whose `parameters.binary_data_size` is set, in
//! the order the inputs are listed. A response carries an output in binary when the output asks
//! for it (`parameters.binary_data`) or the request does for all (`binary_data_output`): its
//! JSON entry then holds `binary_data_size` instead of `data`, and its bytes follow the JSON.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use orbit_contract::{Datatype, FieldError, Tensor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Header giving the length of the JSON part of a binary message.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Request parameters the protocol defines; every other one is the function's.
const PROTOCOL_PARAMETERS: &[&str] = &[
    "binary_data_output",
    "timeout",
    "priority",
    "sequence_id",
    "sequence_start",
    "sequence_end",
    "headers",
];

#[derive(Debug, Deserialize)]
struct RawRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Debug, Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// An output the client asked for, and in which form.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    /// `Some(true)`: binary; `Some(false)`: JSON; `None`: as the request says.
    pub binary: Option<bool>,
}

/// A decoded infer request.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    /// The function's parameters (the request's, less the protocol's own).
    pub parameters: Map<String, Value>,
    pub inputs: Vec<Tensor>,
    /// `None`: every output.
    pub outputs: Option<Vec<RequestedOutput>>,
    pub binary_data_output: bool,
    /// The request's `timeout` (microseconds, as Triton has it).
    pub timeout: Option<Duration>,
}

fn bool_parameter(
    parameters: &Map<String, Value>,
    name: &str,
    field: &str,
) -> Result<Option<bool>, FieldError> {
    match parameters.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(FieldError::new(
            format!("{field}.{name}"),
            "must be true or false",
        )),
    }
}

/// Decodes a request body (JSON, or JSON header plus binary data).
pub fn decode(headers: &HeaderMap, body: &Bytes) -> Result<InferRequest, FieldError> {
    let (json_part, mut binary) = match headers.get(HEADER_LENGTH) {
        Some(value) => {
            let length: usize = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    FieldError::new("Inference-Header-Content-Length", "must be a byte count")
                })?;
            if length > body.len() {
                return Err(FieldError::new(
                    "Inference-Header-Content-Length",
                    format!("is {length} but the body has only {} bytes", body.len()),
                ));
            }
            (body.slice(..length), body.slice(length..))
        }
        None => (body.clone(), Bytes::new()),
    };
    let raw: RawRequest = orbit_contract::parse_json(&json_part)?;
    let mut parameters = raw.parameters.unwrap_or_default();
    let protocol = take_protocol_parameters(&mut parameters)?;
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for (index, input) in raw.inputs.into_iter().enumerate() {
        let field = format!("inputs[{index}]");
        inputs.push(decode_input(input, &field, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(FieldError::new(
            "body",
            format!(
                "{} bytes of binary data are left over after the inputs",
                binary.len()
            ),
        ));
    }
    let outputs = raw
        .outputs
        .map(|outputs| {
            outputs
                .into_iter()
                .enumerate()
                .map(|(index, output)| {
                    let parameters = output.parameters.unwrap_or_default();
                    let field = format!("outputs[{index}].parameters");
                    check_output_parameters(&parameters, &field)?;
                    Ok(RequestedOutput {
                        name: output.name,
                        binary: bool_parameter(&parameters, "binary_data", &field)?,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(InferRequest {
        id: raw.id,
        parameters,
        inputs,
        outputs,
        binary_data_output: protocol.binary_data_output,
        timeout: protocol.timeout,
    })
}

/// The request parameters the protocol defines, as either door reads them.
pub struct ProtocolParameters {
    pub binary_data_output: bool,
    pub timeout: Option<Duration>,
}

/// Takes the protocol's own parameters out of a request's, leaving the function's; refuses
/// sequences (functions are stateless).
pub fn take_protocol_parameters(
    parameters: &mut Map<String, Value>,
) -> Result<ProtocolParameters, FieldError> {
    let binary_data_output =
        bool_parameter(parameters, "binary_data_output", "parameters")?.unwrap_or(false);
    let timeout = match parameters.get("timeout") {
        None => None,
        Some(value) => Some(Duration::from_micros(value.as_u64().ok_or_else(|| {
            FieldError::new(
                "parameters.timeout",
                "must be a whole number of microseconds",
            )
        })?)),
    };
    let sequence = parameters
        .get("sequence_id")
        .is_some_and(|v| v != &json!(0) && v != &json!(""))
        || bool_parameter(parameters, "sequence_start", "parameters")?.unwrap_or(false)
        || bool_parameter(parameters, "sequence_end", "parameters")?.unwrap_or(false);
    if sequence {
        return Err(FieldError::new(
            "parameters.sequence_id",
            "sequences are not supported: Orbit functions are stateless",
        ));
    }
    parameters.retain(|name, _| !PROTOCOL_PARAMETERS.contains(&name.as_str()));
    Ok(ProtocolParameters {
        binary_data_output,
        timeout,
    })
}

/// Refuses an output's parameters that ask for what Orbit does not do.
pub fn check_output_parameters(
    parameters: &Map<String, Value>,
    field: &str,
) -> Result<(), FieldError> {
    if parameters.contains_key("classification") {
        return Err(FieldError::new(
            format!("{field}.classification"),
            "the classification extension is not supported",
        ));
    }
    if parameters.contains_key("shared_memory_region") {
        return Err(FieldError::new(
            format!("{field}.shared_memory_region"),
            "shared memory is not supported",
        ));
    }
    Ok(())
}

/// Refuses an input's parameters that ask for shared memory.
pub fn check_input_parameters(
    parameters: &Map<String, Value>,
    field: &str,
) -> Result<(), FieldError> {
    if parameters.keys().any(|k| k.starts_with("shared_memory")) {
        return Err(FieldError::new(
            format!("{field}.parameters"),
            "shared memory is not supported",
        ));
    }
    Ok(())
}

/// An input's datatype and shape as either door receives them (a name, signed dimensions).
pub fn datatype_and_shape(
    datatype: &str,
    shape: &[i64],
    field: &str,
) -> Result<(Datatype, Vec<usize>), FieldError> {
    let datatype = Datatype::parse(datatype, &format!("{field}.datatype"))?;
    let shape = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| FieldError::new(format!("{field}.shape"), "dimensions must be 0 or more"))?;
    Ok((datatype, shape))
}

fn decode_input(input: RawInput, field: &str, binary: &mut Bytes) -> Result<Tensor, FieldError> {
    let (datatype, shape) = datatype_and_shape(&input.datatype, &input.shape, field)?;
    let parameters = input.parameters.unwrap_or_default();
    check_input_parameters(&parameters, field)?;
    match (parameters.get("binary_data_size"), input.data) {
        (Some(size), None) => {
            let size = size.as_u64().ok_or_else(|| {
                FieldError::new(
                    format!("{field}.parameters.binary_data_size"),
                    "must be a byte count",
                )
            })? as usize;
            if size > binary.len() {
                return Err(FieldError::new(
                    format!("{field}.parameters.binary_data_size"),
                    format!(
                        "is {size} but only {} bytes of binary data are left",
                        binary.len()
                    ),
                ));
            }
            let data = binary.split_to(size);
            Tensor::from_bytes(input.name, datatype, shape, data, field)
        }
        (None, Some(data)) => Tensor::from_json(input.name, datatype, shape, &data, field),
        (Some(_), Some(_)) => Err(FieldError::new(
            format!("{field}.data"),
            "give either data or parameters.binary_data_size, not both",
        )),
        (None, None) => Err(FieldError::new(
            format!("{field}.data"),
            "is required (or binary_data_size)",
        )),
    }
}

/// What an infer response says besides its outputs.
pub struct ResponseHead {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    pub parameters: Map<String, Value>,
}

/// Builds the response: outputs in JSON or binary as asked.
pub fn encode(head: ResponseHead, outputs: &[Tensor], request: &InferRequest) -> Response {
    let mut entries = Vec::with_capacity(outputs.len());
    let mut binary = Vec::new();
    for tensor in outputs {
        let asked = request
            .outputs
            .as_ref()
            .and_then(|outputs| outputs.iter().find(|o| o.name == tensor.name()))
            .and_then(|o| o.binary);
        let mut entry = json!({
            "name": tensor.name(),
            "datatype": tensor.datatype().as_str(),
            "shape": tensor.shape(),
        });
        if asked.unwrap_or(request.binary_data_output) {
            entry["parameters"] = json!({ "binary_data_size": tensor.bytes().len() });
            binary.extend_from_slice(tensor.bytes());
        } else {
            entry["data"] = tensor.to_json_data();
        }
        entries.push(entry);
    }
    let mut document = json!({
        "model_name": head.model_name,
        "model_version": head.model_version,
        "outputs": entries,
    });
    if let Some(id) = head.id {
        document["id"] = json!(id);
    }
    if !head.parameters.is_empty() {
        document["parameters"] = Value::Object(head.parameters);
    }
    let text = document.to_string();
    let mut response = if binary.is_empty() {
        let mut response = Response::new(Body::from(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    } else {
        let length = text.len();
        let mut body = text.into_bytes();
        body.extend_from_slice(&binary);
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(HEADER_LENGTH, HeaderValue::from(length));
        response
    };
    *response.status_mut() = StatusCode::OK;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(length: Option<usize>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(length) = length {
            headers.insert(HEADER_LENGTH, HeaderValue::from(length));
        }
        headers
    }

    #[test]
    fn json_requests_split_protocol_and_function_parameters() {
        let body = json!({
            "id": "42",
            "parameters": {"binary_data_output": true, "window": 3, "timeout": 5000},
            "inputs": [{"name": "data", "shape": [2, 3], "datatype": "INT32", "data": [[1, 2, 3], [4, 5, 6]]}],
            "outputs": [{"name": "values", "parameters": {"binary_data": false}}]
        });
        let request = decode(&headers(None), &Bytes::from(body.to_string())).expect("decodes");
        assert_eq!(request.id.as_deref(), Some("42"));
        assert_eq!(
            Value::Object(request.parameters.clone()),
            json!({"window": 3})
        );
        assert!(request.binary_data_output);
        assert_eq!(request.timeout, Some(Duration::from_millis(5)));
        assert_eq!(request.inputs[0].shape(), &[2, 3]);
        assert_eq!(
            request.inputs[0].to_f64(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(request.outputs.as_ref().unwrap()[0].binary, Some(false));
    }

    #[test]
    fn binary_inputs_follow_the_json_header_in_order() {
        let header = json!({"inputs": [
            {"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
            {"name": "b", "shape": [1], "datatype": "UINT8", "data": [7]},
            {"name": "c", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}
        ]})
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend(1.5f32.to_le_bytes());
        body.extend((-2.0f32).to_le_bytes());
        body.extend((-9i64).to_le_bytes());
        let request =
            decode(&headers(Some(header.len())), &Bytes::from(body.clone())).expect("decodes");
        assert_eq!(request.inputs[0].to_f32(), vec![1.5, -2.0]);
        assert_eq!(request.inputs[1].to_f64(), vec![7.0]);
        assert_eq!(request.inputs[2].to_f64(), vec![-9.0]);
        body.push(0);
        assert_eq!(
            decode(&headers(Some(header.len())), &Bytes::from(body))
                .unwrap_err()
                .field,
            "body"
        );
    }

    #[test]
    fn mismatches_name_their_field() {
        let bad = |body: Value| {
            decode(&headers(None), &Bytes::from(body.to_string()))
                .unwrap_err()
                .field
        };
        assert_eq!(
            bad(
                json!({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]})
            ),
            "inputs[0].data"
        );
        assert_eq!(
            bad(json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP16", "data": [1]}]})),
            "inputs[0].datatype"
        );
        assert_eq!(
            bad(json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]})),
            "inputs[0].data"
        );
        assert_eq!(
            bad(json!({"parameters": {"sequence_id": 7}, "inputs": []})),
            "parameters.sequence_id"
        );
        assert_eq!(
            bad(
                json!({"inputs": [], "outputs": [{"name": "y", "parameters": {"classification": 2}}]})
            ),
            "outputs[0].parameters.classification"
        );
    }

    #[test]
    fn outputs_go_binary_when_asked() {
        let request = decode(
            &headers(None),
            &Bytes::from(
                json!({"parameters": {"binary_data_output": true}, "inputs": [],
                "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": false}}]})
                .to_string(),
            ),
        )
        .unwrap();
        let a = Tensor::from_f32("a", vec![2], &[1.0, 2.0]).unwrap();
        let b = Tensor::from_f64("b", vec![1], &[3.0]).unwrap();
        let head = ResponseHead {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("x".into()),
            parameters: Map::new(),
        };
        let response = encode(head, &[a, b], &request);
        let length: usize = response.headers()[HEADER_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert!(length > 0);
    }
}
