//! The librdkafka client context every Kafka client of the bridge shares.
//!
//! librdkafka reports a broker that refuses the client (SASL authentication failed, a TLS
//! handshake whose certificate did not verify) only as a global error event, and then keeps
//! retrying: to the bridge's metadata calls a wrong password looks like a broker that is down.
//! The context remembers the last refusal so that startup can end with it and readiness can
//! name it, and logs every global error as a structured event.

use std::fmt;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Why the broker would not let the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// SASL authentication failed (a wrong user name, password or mechanism).
    Authentication,
    /// The TLS handshake failed (a certificate that did not verify, TLS against a plaintext
    /// listener).
    Tls,
}

/// A refusal as librdkafka told it: which kind, and its own words (they name the broker and
/// the reason, never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
}

impl Refusal {
    /// The settings to look at.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            RefusalKind::Authentication => {
                "check ORBIT_KAFKA_SASL_USERNAME, ORBIT_KAFKA_SASL_PASSWORD_FILE and \
                 ORBIT_KAFKA_SASL_MECHANISM"
            }
            RefusalKind::Tls => {
                "check ORBIT_KAFKA_SECURITY_PROTOCOL, ORBIT_KAFKA_SSL_CA_LOCATION, and that the \
                 names in ORBIT_KAFKA_BROKERS are those of the broker's certificate"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RefusalKind::Authentication => write!(f, "authentication failed: {}", self.reason),
            RefusalKind::Tls => write!(f, "TLS handshake failed: {}", self.reason),
        }
    }
}

/// Shared by every client the bridge makes; clones share the last refusal.
#[derive(Clone, Default)]
pub struct KafkaContext {
    refusal: Arc<Mutex<Option<Refusal>>>,
}

impl fmt::Debug for KafkaContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaContext")
            .field("refusal", &self.refusal())
            .finish()
    }
}

impl KafkaContext {
    /// The last refusal since the broker last let a client in.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The broker answered a client: whatever refused it before is over.
    pub fn clear_refusal(&self) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn refused(&self, kind: RefusalKind, reason: &str) {
        let refusal = Refusal {
            kind,
            reason: reason.to_string(),
        };
        tracing::error!(refusal = %refusal, hint = refusal.hint(), "Kafka refused the bridge");
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(refusal);
    }
}

impl ClientContext for KafkaContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => {
                self.refused(RefusalKind::Authentication, reason)
            }
            Some(RDKafkaErrorCode::SSL) => self.refused(RefusalKind::Tls, reason),
            _ => tracing::error!(error = %error, reason, "librdkafka error"),
        }
    }
}

impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_kept_until_the_broker_answers() {
        let context = KafkaContext::default();
        let shared = context.clone();
        context.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "connection refused",
        );
        assert_eq!(shared.refusal(), None);
        context.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: broker responded with invalid-proof",
        );
        let refusal = shared.refusal();
        assert_eq!(
            refusal.as_ref().map(|r| r.kind),
            Some(RefusalKind::Authentication)
        );
        assert!(refusal
            .map(|r| r.to_string())
            .is_some_and(|text| text.starts_with("authentication failed: SASL")));
        shared.clear_refusal();
        assert_eq!(context.refusal(), None);
    }
}
