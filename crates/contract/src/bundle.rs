//! Bundles: many jobs (or many results) in one NATS message.
//!
//! A JetStream message costs a publish, an ack, a delivery and an ack per consumer whatever it
//! holds, and on a small box those messages, not the moving averages, are most of the work. So
//! where many jobs arrive together (a batch request, concurrent submits the gateway coalesces)
//! they travel as one message: a JSON array whose elements are exactly the documents that would
//! otherwise be sent one per message (job envelopes on JOBS, result events on RESULTS). A
//! message whose payload is a JSON object is a single document, as before, so a reader handles
//! both and a lone job costs nothing extra.
//!
//! A bundle's `Nats-Msg-Id` is derived from its first job id and its size, so a retried
//! publish is still de-duplicated by JetStream; every sink is keyed on the job id, so a job
//! that reaches a store twice is still recorded once.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// Header on a bundle message: how many documents it holds.
pub const BUNDLE_SIZE_HEADER: &str = "Orbit-Bundle-Size";

/// True when `payload` is a bundle (a JSON array) rather than one document.
pub fn is_bundle(payload: &[u8]) -> bool {
    payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'[')
}

/// The documents in `payload`, each a zero-copy slice of it: the elements of a bundle, or the
/// payload itself when it is one document. Only the array's structure is checked here; each
/// element is decoded by its reader.
pub fn split(payload: &Bytes) -> Result<Vec<Bytes>, serde_json::Error> {
    if !is_bundle(payload) {
        return Ok(vec![payload.clone()]);
    }
    let elements: Vec<&RawValue> = serde_json::from_slice(payload)?;
    Ok(elements
        .into_iter()
        .map(|raw| payload.slice_ref(raw.get().as_bytes()))
        .collect())
}

/// The documents in `payload` decoded as `T`, each with its text (a zero-copy slice of the
/// payload), in one pass over the JSON: the array is not scanned once for its elements and
/// again for their contents. A bundle with an element that is not a `T` is an error naming
/// the element.
pub fn decode<T: DeserializeOwned>(payload: &Bytes) -> Result<Vec<(Bytes, T)>, DecodeError> {
    let bytes: &[u8] = payload;
    let Some(first) = skip_whitespace(bytes, 0) else {
        return Err(DecodeError::Empty);
    };
    if bytes[first] != b'[' {
        let document = serde_json::from_slice(bytes).map_err(DecodeError::Document)?;
        return Ok(vec![(payload.clone(), document)]);
    }
    let mut documents = Vec::new();
    let mut position = skip_whitespace(bytes, first + 1).ok_or(DecodeError::Unterminated)?;
    if bytes[position] == b']' {
        return trailing(bytes, position + 1).map(|()| documents);
    }
    loop {
        let index = documents.len();
        let mut stream = serde_json::Deserializer::from_slice(&bytes[position..]).into_iter::<T>();
        let document = match stream.next() {
            Some(Ok(document)) => document,
            Some(Err(err)) => return Err(DecodeError::Element { index, source: err }),
            None => return Err(DecodeError::Unterminated),
        };
        let end = position + stream.byte_offset();
        documents.push((payload.slice(position..end), document));
        let separator = skip_whitespace(bytes, end).ok_or(DecodeError::Unterminated)?;
        match bytes[separator] {
            b',' => {
                position =
                    skip_whitespace(bytes, separator + 1).ok_or(DecodeError::Unterminated)?;
            }
            b']' => return trailing(bytes, separator + 1).map(|()| documents),
            _ => return Err(DecodeError::Separator { index }),
        }
    }
}

/// Why a payload could not be decoded by [`decode`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the payload is empty")]
    Empty,
    #[error("{0}")]
    Document(serde_json::Error),
    #[error("element {index}: {source}")]
    Element {
        index: usize,
        source: serde_json::Error,
    },
    #[error("no ',' or ']' after element {index}")]
    Separator { index: usize },
    #[error("the bundle ends before its closing ']'")]
    Unterminated,
    #[error("text after the bundle's closing ']'")]
    Trailing,
}

/// The index of the first byte at or after `from` that is not JSON whitespace.
fn skip_whitespace(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&i| !matches!(bytes[i], b' ' | b'\n' | b'\t' | b'\r'))
}

fn trailing(bytes: &[u8], from: usize) -> Result<(), DecodeError> {
    match skip_whitespace(bytes, from) {
        None => Ok(()),
        Some(_) => Err(DecodeError::Trailing),
    }
}

/// Joins encoded documents into one bundle payload.
pub fn join<'a>(documents: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.push(b'[');
    for (index, document) in documents.into_iter().enumerate() {
        if index > 0 {
            payload.push(b',');
        }
        payload.extend_from_slice(document);
    }
    payload.push(b']');
    payload
}

/// Splits `sizes` (encoded document lengths, in order) into consecutive ranges of at most
/// `max_documents` documents and, where possible, at most `max_bytes` bytes once joined. A
/// document larger than `max_bytes` on its own gets a range to itself.
pub fn ranges(
    sizes: &[usize],
    max_documents: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let max_documents = max_documents.max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 2; // the brackets
    for (index, &size) in sizes.iter().enumerate() {
        let grown = bytes + size + 1;
        if index > start && (index - start >= max_documents || grown > max_bytes) {
            ranges.push(start..index);
            start = index;
            bytes = 2;
        }
        bytes += size + 1;
    }
    if start < sizes.len() {
        ranges.push(start..sizes.len());
    }
    ranges
}

/// The `Nats-Msg-Id` of a bundle: its first document's id and how many follow, so the same
/// bundle published again (a retry) is recognised, and a different cut of the same jobs is not
/// mistaken for it.
pub fn bundle_id(first_id: &str, documents: usize) -> String {
    format!("{first_id}+{documents}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_documents_pass_through() {
        let payload = Bytes::from_static(br#" {"a": [1, 2]} "#);
        assert!(!is_bundle(&payload));
        assert_eq!(split(&payload).expect("split"), vec![payload]);
    }

    #[test]
    fn bundles_split_into_their_elements_without_copying() {
        let docs: [&[u8]; 3] = [br#"{"a":1}"#, br#"{"b":[1.5,2]}"#, br#"{"c":"x,]"}"#];
        let payload = Bytes::from(join(docs));
        assert!(is_bundle(&payload));
        let parts = split(&payload).expect("split");
        assert_eq!(parts.len(), 3);
        for (part, doc) in parts.iter().zip(docs) {
            assert_eq!(&part[..], doc);
            let offset = part.as_ptr() as usize - payload.as_ptr() as usize;
            assert!(offset < payload.len(), "a slice of the payload");
        }
    }

    #[test]
    fn decode_gives_each_document_with_its_text() {
        let docs: [&[u8]; 3] = [br#"{"a":1}"#, br#"{"a":[1.5,2]}"#, br#"{"a":"x,]"}"#];
        let payload = Bytes::from(join(docs));
        let decoded: Vec<(Bytes, serde_json::Value)> = decode(&payload).expect("decode");
        assert_eq!(decoded.len(), 3);
        for ((text, value), doc) in decoded.iter().zip(docs) {
            assert_eq!(&text[..], doc);
            assert_eq!(
                value,
                &serde_json::from_slice::<serde_json::Value>(doc).unwrap()
            );
        }
        let spaced = Bytes::from_static(b" [ {\"a\":1} ,\n{\"a\":2} ] ");
        let decoded: Vec<(Bytes, serde_json::Value)> = decode(&spaced).expect("spaced");
        assert_eq!(&decoded[1].0[..], br#"{"a":2}"#);
        let single = Bytes::from_static(br#" {"a": 1} "#);
        let decoded: Vec<(Bytes, serde_json::Value)> = decode(&single).expect("single");
        assert_eq!(decoded[0].0, single);
        let empty: Vec<(Bytes, serde_json::Value)> = decode(&Bytes::from_static(b"[ ]")).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn decode_names_what_is_wrong() {
        #[derive(Debug, serde::Deserialize)]
        struct Doc {
            #[allow(dead_code)]
            a: u32,
        }
        let cases: [(&[u8], &str); 6] = [
            (br#"[{"a":1},{"b":2}]"#, "element 1"),
            (br#"[{"a":1} {"a":2}]"#, "no ',' or ']' after element 0"),
            (br#"[{"a":1},"#, "ends before"),
            (br#"[{"a":1}] x"#, "after the bundle"),
            (b"  ", "empty"),
            (br#"{"a":"x"}"#, "invalid type"),
        ];
        for (payload, expected) in cases {
            let err = decode::<Doc>(&Bytes::copy_from_slice(payload)).expect_err("must fail");
            assert!(err.to_string().contains(expected), "{err} for {payload:?}");
        }
    }

    #[test]
    fn a_broken_bundle_is_an_error() {
        assert!(split(&Bytes::from_static(b"[{\"a\":1},")).is_err());
    }

    #[test]
    fn ranges_respect_both_limits() {
        assert_eq!(ranges(&[10; 5], 2, 1000), vec![0..2, 2..4, 4..5]);
        assert_eq!(ranges(&[10, 10, 10], 100, 25), vec![0..2, 2..3]);
        assert_eq!(ranges(&[100, 5], 100, 50), vec![0..1, 1..2]);
        assert!(ranges(&[], 10, 10).is_empty());
    }
}
