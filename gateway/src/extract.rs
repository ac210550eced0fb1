//! A JSON body extractor whose every rejection is a JSON error naming the field.
//!
//! axum's own `Json` answers bad input with plain text; clients of this API get the same
//! `{"error": ...}` shape for a syntax error, a wrong type, or a body over the limit.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// The parsed body.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let JsonObjectBytes(bytes) = JsonObjectBytes::from_request(request, state).await?;
        orbit_contract::parse_json(&bytes)
            .map(JsonBody)
            .map_err(ApiError::Malformed)
    }
}

/// The body, within the size limit and starting as a JSON object, not yet parsed: for a
/// handler that reads it its own way.
pub struct JsonObjectBytes(pub Bytes);

impl FromRequest<AppState> for JsonObjectBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        json_object(request, state, state.config.max_body_bytes)
            .await
            .map(Self)
    }
}

/// The body, starting as a JSON object, under `limit` bytes: the limit the route's
/// `DefaultBodyLimit` sets, named in the 413.
pub async fn json_object(
    request: Request,
    state: &AppState,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit }
            } else {
                ApiError::Malformed(orbit_contract::FieldError::new(
                    "body",
                    rejection.body_text(),
                ))
            }
        })?;
    // Every endpoint takes a JSON object; without this check serde would read a struct
    // from an array positionally and report a baffling error.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::Malformed(orbit_contract::FieldError::new(
            "body",
            "must be a JSON object",
        )));
    }
    Ok(bytes)
}
