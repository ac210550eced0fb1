//! Setting a message aside: what a function or a sink cannot process (an unreadable message,
//! a job its store refuses) goes to `orbit.deadletter.<origin>` with the reason and the job
//! id, and only then is the original terminated, so nothing is dropped on the way.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, Message};
use async_nats::HeaderMap;
use orbit_contract::subjects::{deadletter_subject, DEADLETTER_REASON_HEADER, JOB_ID_HEADER};

/// Moves a message to `orbit.deadletter.<function>` with the reason, then terminates it. If
/// the dead letter cannot be stored, the message is left for redelivery instead.
pub(crate) async fn dead_letter(
    js: &jetstream::Context,
    function: &str,
    message: &Message,
    reason: &str,
) {
    let headers = message.headers.as_ref();
    let job_id = headers
        .and_then(|h| h.get(JOB_ID_HEADER))
        .or_else(|| headers.and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID)))
        .map(|value| value.as_str());
    match store_dead_letter(js, function, job_id, message.payload.clone(), reason).await {
        Ok(()) => {
            tracing::error!(function, job_id, reason, "message dead-lettered");
            if let Err(err) = message.ack_with(AckKind::Term).await {
                tracing::warn!(error = %err, "term failed after dead-lettering");
            }
        }
        Err(err) => {
            tracing::error!(function, error = %err, "dead letter not stored; leaving for redelivery");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
        }
    }
}

/// Stores `payload` (a message, or one job of a bundle) on `orbit.deadletter.<function>` with
/// the reason and the job id.
pub(crate) async fn store_dead_letter(
    js: &jetstream::Context,
    function: &str,
    job_id: Option<&str>,
    payload: bytes::Bytes,
    reason: &str,
) -> Result<(), async_nats::Error> {
    let mut headers = HeaderMap::new();
    headers.insert(DEADLETTER_REASON_HEADER, sanitize_header(reason).as_str());
    if let Some(job_id) = job_id {
        headers.insert(JOB_ID_HEADER, job_id);
    }
    js.publish_with_headers(deadletter_subject(function), headers, payload)
        .await?
        .await?;
    metrics::counter!("orbit_deadletters_total", "function" => function.to_string()).increment(1);
    Ok(())
}

/// Header values cannot hold line breaks and should stay short.
fn sanitize_header(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_lose_line_breaks() {
        assert_eq!(sanitize_header("a\nb"), "a b");
    }
}
