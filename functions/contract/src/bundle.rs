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
