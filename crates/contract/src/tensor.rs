//! Tensors: named, typed, shaped arrays, for functions whose input is not one series (an image
//! tile, a batch of windows).
//!
//! In memory a tensor is its little-endian bytes, the layout ONNX Runtime and Triton's binary
//! protocol use, so a tile received as binary is never converted. On the bus and in stored
//! results it travels as `{"name", "datatype", "shape", "b64"}`: base64 of those bytes inside
//! the JSON document. A float32 as base64 is 5.3 bytes against 10 to 20 as a JSON number, and
//! encoding it is a copy rather than a float-to-text conversion, while jobs and results stay
//! the JSON documents that bundles, sinks and the Kafka mirror already carry.

use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::FieldError;

/// Element types, named as the Open Inference Protocol names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp32,
    Fp64,
}

impl Datatype {
    pub const ALL: &'static [Datatype] = &[
        Self::Bool,
        Self::Uint8,
        Self::Uint16,
        Self::Uint32,
        Self::Uint64,
        Self::Int8,
        Self::Int16,
        Self::Int32,
        Self::Int64,
        Self::Fp32,
        Self::Fp64,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::Uint8 => "UINT8",
            Self::Uint16 => "UINT16",
            Self::Uint32 => "UINT32",
            Self::Uint64 => "UINT64",
            Self::Int8 => "INT8",
            Self::Int16 => "INT16",
            Self::Int32 => "INT32",
            Self::Int64 => "INT64",
            Self::Fp32 => "FP32",
            Self::Fp64 => "FP64",
        }
    }

    /// Parses a protocol name; `field` names it in the error.
    pub fn parse(name: &str, field: &str) -> Result<Self, FieldError> {
        Self::ALL
            .iter()
            .copied()
            .find(|datatype| datatype.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|d| d.as_str()).collect();
                FieldError::new(
                    field,
                    format!(
                        "datatype {name} is not supported; use one of {}",
                        known.join(", ")
                    ),
                )
            })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::Uint8 | Self::Int8 => 1,
            Self::Uint16 | Self::Int16 => 2,
            Self::Uint32 | Self::Int32 | Self::Fp32 => 4,
            Self::Uint64 | Self::Int64 | Self::Fp64 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Self::Fp32 | Self::Fp64)
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Elements in a tensor of `shape`, or `None` when the product overflows.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// A named tensor: datatype, shape and little-endian element bytes, consistent by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    name: String,
    datatype: Datatype,
    shape: Vec<usize>,
    data: Bytes,
}

impl Tensor {
    /// A tensor over `data`, which must hold exactly the elements `shape` calls for.
    pub fn from_bytes(
        name: impl Into<String>,
        datatype: Datatype,
        shape: Vec<usize>,
        data: Bytes,
        field: &str,
    ) -> Result<Self, FieldError> {
        let elements = element_count(&shape)
            .ok_or_else(|| FieldError::new(format!("{field}.shape"), "is too large"))?;
        let expected = elements.checked_mul(datatype.size());
        if expected != Some(data.len()) {
            return Err(FieldError::new(
                field,
                format!(
                    "shape {shape:?} of {datatype} needs {} bytes of data, got {}",
                    expected.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                    data.len()
                ),
            ));
        }
        if datatype == Datatype::Bool && data.iter().any(|&b| b > 1) {
            return Err(FieldError::new(field, "BOOL elements must be bytes 0 or 1"));
        }
        Ok(Self {
            name: name.into(),
            datatype,
            shape,
            data,
        })
    }

    /// A tensor from JSON numbers (a flat list, or nested lists as the Open Inference
    /// Protocol allows), converted exactly or refused: an integer datatype takes only integers
    /// in its range, FP32 takes any finite number (rounded to the nearest float32).
    pub fn from_json(
        name: impl Into<String>,
        datatype: Datatype,
        shape: Vec<usize>,
        data: &Value,
        field: &str,
    ) -> Result<Self, FieldError> {
        let elements = element_count(&shape)
            .ok_or_else(|| FieldError::new(format!("{field}.shape"), "is too large"))?;
        let mut bytes = Vec::with_capacity(elements.saturating_mul(datatype.size()).min(1 << 26));
        let mut count = 0usize;
        let data_field = format!("{field}.data");
        let mut push = |value: &Value| -> Result<(), FieldError> {
            if count >= elements {
                return Err(FieldError::new(
                    &data_field,
                    format!("holds more than the {elements} elements shape {shape:?} calls for"),
                ));
            }
            encode_element(datatype, value, &mut bytes)
                .map_err(|message| FieldError::new(format!("{data_field}[{count}]"), message))?;
            count += 1;
            Ok(())
        };
        let mut stack = vec![data];
        if !data.is_array() {
            return Err(FieldError::new(&data_field, "must be an array"));
        }
        // Depth-first, left to right: nested lists flatten in row-major order.
        while let Some(value) = stack.pop() {
            match value {
                Value::Array(items) => stack.extend(items.iter().rev()),
                other => push(other)?,
            }
        }
        if count != elements {
            return Err(FieldError::new(
                &data_field,
                format!("holds {count} elements but shape {shape:?} calls for {elements}"),
            ));
        }
        Self::from_bytes(name, datatype, shape, bytes.into(), field)
    }

    /// An FP32 tensor.
    pub fn from_f32(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: &[f32],
    ) -> Result<Self, FieldError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(name, Datatype::Fp32, shape, bytes.into(), "tensor")
    }

    /// An FP64 tensor.
    pub fn from_f64(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: &[f64],
    ) -> Result<Self, FieldError> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::from_bytes(name, Datatype::Fp64, shape, bytes.into(), "tensor")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn datatype(&self) -> Datatype {
        self.datatype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The little-endian element bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.datatype.size()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same tensor under another name.
    pub fn renamed(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Every element as `f64` (exact for all datatypes but 64-bit integers beyond 2^53).
    pub fn to_f64(&self) -> Vec<f64> {
        self.elements().map(|e| e.as_f64()).collect()
    }

    /// Every element as `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        match self.datatype {
            Datatype::Fp32 => self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => self.elements().map(|e| e.as_f64() as f32).collect(),
        }
    }

    /// The elements as a flat JSON list (booleans as `true`/`false`).
    pub fn to_json_data(&self) -> Value {
        Value::Array(self.elements().map(Element::to_json).collect())
    }

    /// Rows `start..end` of the first dimension, as a tensor of their own (zero-copy).
    pub fn rows(&self, start: usize, end: usize) -> Option<Self> {
        let first = *self.shape.first()?;
        if start > end || end > first {
            return None;
        }
        let row = element_count(&self.shape[1..])? * self.datatype.size();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Some(Self {
            name: self.name.clone(),
            datatype: self.datatype,
            shape,
            data: self.data.slice(start * row..end * row),
        })
    }

    fn elements(&self) -> impl Iterator<Item = Element> + '_ {
        let size = self.datatype.size();
        let datatype = self.datatype;
        self.data
            .chunks_exact(size)
            .map(move |c| Element::read(datatype, c))
    }
}

/// One element read out of a tensor.
#[derive(Debug, Clone, Copy)]
enum Element {
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float32(f32),
    Float(f64),
}

impl Element {
    fn read(datatype: Datatype, c: &[u8]) -> Self {
        let mut wide = [0u8; 8];
        wide[..c.len()].copy_from_slice(c);
        let raw = u64::from_le_bytes(wide);
        match datatype {
            Datatype::Bool => Self::Bool(c[0] != 0),
            Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 | Datatype::Uint64 => {
                Self::Unsigned(raw)
            }
            Datatype::Int8 => Self::Signed(i64::from(c[0] as i8)),
            Datatype::Int16 => Self::Signed(i64::from(i16::from_le_bytes([c[0], c[1]]))),
            Datatype::Int32 => {
                Self::Signed(i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            }
            Datatype::Int64 => Self::Signed(raw as i64),
            Datatype::Fp32 => Self::Float32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            Datatype::Fp64 => Self::Float(f64::from_bits(raw)),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Self::Bool(b) => f64::from(u8::from(b)),
            Self::Signed(i) => i as f64,
            Self::Unsigned(u) => u as f64,
            Self::Float32(f) => f64::from(f),
            Self::Float(f) => f,
        }
    }

    fn to_json(self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(b),
            Self::Signed(i) => Value::from(i),
            Self::Unsigned(u) => Value::from(u),
            // JSON has no NaN or infinity: such outputs are written as null.
            Self::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            // The shortest decimal that reads back as the same float32 (0.1, not
            // 0.10000000149011612), carried as the f64 that prints the same digits.
            Self::Float32(f) => f
                .to_string()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
        }
    }
}

/// Appends one JSON element as `datatype`'s little-endian bytes; the error says why not.
fn encode_element(datatype: Datatype, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    if datatype == Datatype::Bool {
        let b = value
            .as_bool()
            .or_else(|| value.as_u64().filter(|&n| n <= 1).map(|n| n == 1))
            .ok_or("must be true or false")?;
        out.push(u8::from(b));
        return Ok(());
    }
    if datatype.is_float() {
        let x = value.as_f64().ok_or("must be a number")?;
        if !x.is_finite() {
            return Err("must be a finite number".into());
        }
        match datatype {
            Datatype::Fp32 => {
                let narrowed = x as f32;
                if !narrowed.is_finite() {
                    return Err(format!("{x} does not fit FP32"));
                }
                out.extend_from_slice(&narrowed.to_le_bytes());
            }
            _ => out.extend_from_slice(&x.to_le_bytes()),
        }
        return Ok(());
    }
    let integer: i128 = match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1.8e19)
                    .map(|f| f as i128)
            })
            .ok_or("must be an integer")?,
        _ => return Err("must be an integer".into()),
    };
    let (min, max): (i128, i128) = match datatype {
        Datatype::Uint8 => (0, u8::MAX.into()),
        Datatype::Uint16 => (0, u16::MAX.into()),
        Datatype::Uint32 => (0, u32::MAX.into()),
        Datatype::Uint64 => (0, u64::MAX.into()),
        Datatype::Int8 => (i8::MIN.into(), i8::MAX.into()),
        Datatype::Int16 => (i16::MIN.into(), i16::MAX.into()),
        Datatype::Int32 => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    if integer < min || integer > max {
        return Err(format!(
            "{integer} is out of range for {datatype} ({min} to {max})"
        ));
    }
    out.extend_from_slice(&integer.to_le_bytes()[..datatype.size()]);
    Ok(())
}

/// A tensor as JSON documents carry it.
#[derive(Serialize, Deserialize)]
struct WireTensor<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    datatype: Datatype,
    shape: Vec<usize>,
    #[serde(borrow)]
    b64: std::borrow::Cow<'a, str>,
}

impl Serialize for Tensor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireTensor {
            name: self.name.as_str().into(),
            datatype: self.datatype,
            shape: self.shape.clone(),
            b64: base64::engine::general_purpose::STANDARD
                .encode(&self.data)
                .into(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tensor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = WireTensor::deserialize(deserializer)?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(wire.b64.as_bytes())
            .map_err(|err| D::Error::custom(format!("tensor {}: b64: {err}", wire.name)))?;
        Tensor::from_bytes(
            wire.name.into_owned(),
            wire.datatype,
            wire.shape,
            data.into(),
            "tensor",
        )
        .map_err(|err| D::Error::custom(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_the_wire_form() {
        let tensor = Tensor::from_json(
            "tile",
            Datatype::Fp32,
            vec![1, 2, 2],
            &json!([[[0.1, 1], [2, -3.25]]]),
            "inputs[0]",
        )
        .expect("valid");
        assert_eq!(
            tensor.to_json_data(),
            json!([0.1, 1.0, 2.0, -3.25]),
            "float32s print short"
        );
        let tensor = Tensor::from_json(
            "tile",
            Datatype::Fp32,
            vec![1, 2, 2],
            &json!([[[0.5, 1], [2, -3.25]]]),
            "inputs[0]",
        )
        .expect("valid");
        assert_eq!(tensor.to_f32(), vec![0.5, 1.0, 2.0, -3.25]);
        let wire = serde_json::to_string(&tensor).expect("encode");
        assert!(wire.contains("\"b64\""), "{wire}");
        let back: Tensor = serde_json::from_str(&wire).expect("decode");
        assert_eq!(back, tensor);
        assert_eq!(back.to_json_data(), json!([0.5, 1.0, 2.0, -3.25]));
    }

    #[test]
    fn conversions_are_exact_or_refused() {
        let ok = |d, v: Value| Tensor::from_json("x", d, vec![1], &v, "inputs[0]");
        assert!(ok(Datatype::Uint8, json!([255])).is_ok());
        assert_eq!(
            ok(Datatype::Uint8, json!([256])).unwrap_err().field,
            "inputs[0].data[0]"
        );
        assert!(ok(Datatype::Int32, json!([1.5])).is_err());
        assert!(ok(Datatype::Int64, json!([-9007199254740993_i64])).is_ok());
        assert!(ok(Datatype::Fp32, json!([1e39])).is_err());
        assert!(ok(Datatype::Bool, json!([true])).is_ok());
        let int = ok(Datatype::Int16, json!([-2])).unwrap();
        assert_eq!(int.to_f64(), vec![-2.0]);
        assert_eq!(int.to_json_data(), json!([-2]));
    }

    #[test]
    fn element_counts_must_match_the_shape() {
        let err = Tensor::from_json(
            "x",
            Datatype::Fp64,
            vec![2, 2],
            &json!([1, 2, 3]),
            "inputs[0]",
        )
        .unwrap_err();
        assert_eq!(err.field, "inputs[0].data");
        assert!(err.message.contains("holds 3 elements"), "{err}");
        let err = Tensor::from_json("x", Datatype::Fp64, vec![1], &json!([1, 2]), "inputs[0]")
            .unwrap_err();
        assert!(err.message.contains("more than"), "{err}");
        let err = Tensor::from_bytes(
            "x",
            Datatype::Fp32,
            vec![3],
            Bytes::from_static(&[0; 8]),
            "inputs[0]",
        )
        .unwrap_err();
        assert!(err.message.contains("needs 12 bytes"), "{err}");
    }

    #[test]
    fn rows_slice_the_first_dimension() {
        let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let tensor = Tensor::from_f32("x", vec![3, 4], &values).unwrap();
        let middle = tensor.rows(1, 2).unwrap();
        assert_eq!(middle.shape(), &[1, 4]);
        assert_eq!(middle.to_f32(), vec![4.0, 5.0, 6.0, 7.0]);
        assert!(tensor.rows(2, 4).is_none());
    }
}
