//! Bad input, fuzzed: the request parser and validator (what the gateway runs on every body)
//! and the bundle decoder (what every replica runs on every message) are fed random bytes,
//! random JSON built from the request's own vocabulary, and valid inputs cut and flipped. They
//! must never panic, and must answer either a valid job (within the function's limits) or an
//! error naming a field, with a message. Bounded (a few thousand cases, seconds), so it runs in
//! every `just test`; a case that fails is kept by proptest under `proptest-regressions/` and
//! tried first on every later run.

use bytes::Bytes;
use orbit_contract::descriptor::{FunctionDescriptor, FunctionSpec, InputKind, Limits, TensorSpec};
use orbit_contract::tensor::Datatype;
use orbit_contract::{bundle, parse_json, JobRequest, ValidJob};
use proptest::prelude::*;
use serde_json::{json, Value};

/// moving_average's declaration, as the gateway checks requests against it.
fn spec() -> FunctionSpec {
    FunctionSpec::new(FunctionDescriptor {
        name: "moving_average".into(),
        version: "0.1.0".into(),
        versions: Vec::new(),
        description: "fuzzed".into(),
        platform: "orbit".into(),
        input: InputKind::Series,
        parameters: json!({"type": "object", "additionalProperties": false,
            "properties": {"window": {"type": "integer", "minimum": 1, "default": 5, "x-orbit-maximum": "series_length"},
                           "kind": {"enum": ["simple", "wma"], "default": "simple"}}}),
        inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
        outputs: vec![],
        limits: Limits::default(),
        example: None,
    })
    .expect("the declaration is valid")
}

/// Runs a body through what the gateway does with it; panics only on a broken promise.
fn check_body(bytes: &[u8], spec: &FunctionSpec) {
    let request: JobRequest = match parse_json(bytes) {
        Ok(request) => request,
        Err(error) => {
            assert!(
                !error.field.is_empty() && !error.message.is_empty(),
                "{error:?}"
            );
            return;
        }
    };
    if let Err(error) = request.check_shape() {
        assert!(
            !error.field.is_empty() && !error.message.is_empty(),
            "{error:?}"
        );
        return;
    }
    match ValidJob::parse(request, spec) {
        Ok(job) => {
            let window = job.parameters["window"].as_u64().unwrap_or(0);
            assert!(
                window >= 1,
                "a valid job has a window: {:?}",
                job.parameters
            );
        }
        Err(error) => assert!(
            !error.field.is_empty() && !error.message.is_empty(),
            "{error:?}"
        ),
    }
}

/// Random JSON leaning on the request's vocabulary, so most cases get past the parser and
/// reach the validator.
fn request_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("model_name".to_string()),
        Just("data".to_string()),
        Just("parameters".to_string()),
        Just("metadata".to_string()),
        Just("window".to_string()),
        Just("kind".to_string()),
        Just("inputs".to_string()),
        Just("model_version".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        Just(Value::from("moving_average")),
        Just(Value::from("wma")),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A request that is valid, to be cut and flipped.
fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(-1e3f64..1e3, 1..40), 1u64..8).prop_map(|(data, window)| {
        serde_json::to_vec(&json!({
            "model_name": "moving_average", "data": data,
            "parameters": {"window": window}, "metadata": {"source": "fuzz"}
        }))
        .expect("encodes")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_give_a_job_or_a_named_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_body(&bytes, &spec());
    }

    #[test]
    fn any_json_gives_a_job_or_a_named_error(body in request_json()) {
        check_body(&serde_json::to_vec(&body).expect("encodes"), &spec());
        // Requests as the seed's clients send them: the random value as the data or metadata.
        let wrapped = json!({"model_name": "moving_average", "data": body.clone(), "metadata": body});
        check_body(&serde_json::to_vec(&wrapped).expect("encodes"), &spec());
    }

    #[test]
    fn valid_requests_cut_or_flipped_never_panic(
        bytes in valid_request(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        check_body(&bytes, &spec());
        check_body(&bytes[..cut.index(bytes.len() + 1)], &spec());
        let mut flipped = bytes.clone();
        let at = flip.index(flipped.len());
        flipped[at] = to;
        check_body(&flipped, &spec());
    }

    #[test]
    fn any_bytes_decode_as_a_bundle_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let payload = Bytes::from(bytes);
        if let Ok(documents) = bundle::decode::<Value>(&payload) {
            for (text, value) in documents {
                let again: Value = serde_json::from_slice(&text).expect("each slice is its document");
                prop_assert_eq!(again, value);
            }
        }
    }

    #[test]
    fn bundles_round_trip_and_survive_damage(
        documents in prop::collection::vec(request_json(), 0..6),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        to in any::<u8>(),
    ) {
        let texts: Vec<Vec<u8>> = documents.iter().map(|d| serde_json::to_vec(d).expect("encodes")).collect();
        let joined = bundle::join(texts.iter().map(Vec::as_slice));
        let payload = Bytes::from(joined.clone());
        if !documents.is_empty() {
            let decoded = bundle::decode::<Value>(&payload).expect("a joined bundle decodes");
            let values: Vec<Value> = decoded.iter().map(|(_, v)| v.clone()).collect();
            prop_assert_eq!(&values, &documents);
            for ((text, _), original) in decoded.iter().zip(&texts) {
                prop_assert_eq!(text.as_ref(), original.as_slice());
            }
        }
        let _ = bundle::decode::<Value>(&Bytes::from(joined[..cut.index(joined.len() + 1)].to_vec()));
        if !joined.is_empty() {
            let mut damaged = joined;
            let at = flip.index(damaged.len());
            damaged[at] = to;
            let _ = bundle::decode::<Value>(&Bytes::from(damaged));
        }
    }
}
