//! Tiny ONNX models, written byte by byte: enough protobuf to build `y = x * k` (one `Mul`
//! with a constant), so the model repository tests make a brand-new model of their own and
//! need no Python. The layout is onnx.proto's (field numbers in the comments).

/// A model `y = x * factor` on FP32 input `x` of shape `[batch, width]` (batch free).
pub fn scale_model(width: i64, factor: f32) -> Vec<u8> {
    let tensor_type = |dims: &[Dim]| -> Vec<u8> {
        let mut shape = Vec::new();
        for dim in dims {
            let encoded = match dim {
                Dim::Value(v) => varint_field(1, *v as u64),
                Dim::Param(p) => bytes_field(2, p.as_bytes()),
            };
            shape.extend(bytes_field(1, &encoded)); // TensorShapeProto.dim = 1
        }
        let mut tensor = varint_field(1, 1); // elem_type = FLOAT
        tensor.extend(bytes_field(2, &shape)); // shape = 2
        bytes_field(1, &tensor) // TypeProto.tensor_type = 1
    };
    let value_info = |name: &str| -> Vec<u8> {
        let mut info = bytes_field(1, name.as_bytes()); // name = 1
        info.extend(bytes_field(
            2,
            &tensor_type(&[Dim::Param("batch"), Dim::Value(width)]),
        )); // type = 2
        info
    };
    let mut node = bytes_field(1, b"x"); // input = 1
    node.extend(bytes_field(1, b"k"));
    node.extend(bytes_field(2, b"y")); // output = 2
    node.extend(bytes_field(3, b"scale")); // name = 3
    node.extend(bytes_field(4, b"Mul")); // op_type = 4

    let mut constant = varint_field(1, 1); // dims = 1: [1]
    constant.extend(varint_field(2, 1)); // data_type = FLOAT
    constant.extend(bytes_field(8, b"k")); // name = 8
    constant.extend(bytes_field(9, &factor.to_le_bytes())); // raw_data = 9

    let mut graph = bytes_field(1, &node); // node = 1
    graph.extend(bytes_field(2, b"scale")); // name = 2
    graph.extend(bytes_field(5, &constant)); // initializer = 5
    graph.extend(bytes_field(11, &value_info("x"))); // input = 11
    graph.extend(bytes_field(12, &value_info("y"))); // output = 12

    let mut opset = bytes_field(1, b""); // domain = 1
    opset.extend(varint_field(2, 17)); // version = 2

    let mut model = varint_field(1, 8); // ir_version = 1
    model.extend(bytes_field(2, b"orbit-tests")); // producer_name = 2
    model.extend(bytes_field(7, &graph)); // graph = 7
    model.extend(bytes_field(8, &opset)); // opset_import = 8
    model
}

enum Dim {
    Value(i64),
    Param(&'static str),
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(field: u32, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(field) << 3, &mut out);
    varint(value, &mut out);
    out
}

fn bytes_field(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((u64::from(field) << 3) | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}
