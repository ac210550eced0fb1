//! `POST /api/v1/inference/panel`: many series for one series function in one request,
//! `{"model_name", "model_version", "data": [[...], [...], ...], "parameters", "metadata"}`,
//! each series a synchronous job of its own ([`crate::panel`]), answered in order.
//!
//! The answer streams as the series are answered: one JSON document, `{"panel_id",
//! "model_name", "series", "results": [...], "succeeded", "failed"}`, or with `Accept:
//! application/x-ndjson` one line per series. Each result is `{"index", "job_id", "status":
//! "succeeded", "output", "worker_id"}` or `{"index", "job_id", "status": "failed", "error":
//! {"code", "message", "field"}}`, the error as any `/api/v1` error says it, its field named in
//! the panel (`data[7][3]`). Only a panel wrong as a whole is refused (400 or 422 before anything
//! runs); the body may be up to `ORBIT_PANEL_MAX_BODY_BYTES`.
//!
//! The body is kept as it came and each series is read out of it when its turn comes, so a
//! panel of 100,000 series costs the gateway its body and a few bytes a series, not a parsed
//! copy of every number at once.

use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use orbit_contract::{parse_json, FieldError};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::extract;
use crate::panel::{series_field, Answer, Panel, PanelRequest};
use crate::routes::inference::idempotency_key;
use crate::state::AppState;

/// The response header that carries the panel's id (the prefix of every series' job id).
pub const PANEL_ID_HEADER: &str = "orbit-panel-id";
/// The media type of the line-per-series answer.
pub const NDJSON: &str = "application/x-ndjson";
/// Answers that are ready together leave in one chunk, up to this many.
const CHUNK: usize = 256;

/// The handler.
pub async fn panel(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let format = Format::asked(&headers);
    let limits = &state.config.panel;
    let body = extract::json_object(request, &state, limits.max_body_bytes).await?;
    let read = read_panel(&body, limits.max_series)?;
    let spec = state
        .registry
        .spec(&read.model_name, "model_name")
        .await
        .map_err(ApiError::Invalid)?;
    let series = read.series.len();
    let panel = Arc::new(
        Panel::new(
            spec,
            PanelRequest {
                version: read.model_version,
                parameters: read.parameters,
                metadata: read.metadata,
                key,
                series,
                series_length: None,
                timeout: state.config.sync_timeout,
            },
        )
        .map_err(ApiError::Invalid)?,
    );
    let values = read
        .series
        .into_iter()
        .map(move |span| read_series(&body[span]));
    let mut encoder = Encoder {
        format,
        panel_id: panel.id().to_string(),
        function: panel.function().to_string(),
        series,
        succeeded: 0,
        failed: 0,
        started: Instant::now(),
    };
    let panel_id = HeaderValue::from_str(panel.id())
        .map_err(|err| ApiError::Internal(format!("panel id is no header value: {err}")))?;
    let chunks = panel
        .run(state.clone(), limits.concurrency, values)
        .map(move |answer| encoder.entry(answer))
        .ready_chunks(CHUNK)
        .map(|entries| Ok::<_, Infallible>(Bytes::from(entries.concat())));
    let mut response = Response::new(Body::from_stream(chunks));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, format.content_type());
    headers.insert(PANEL_ID_HEADER, panel_id);
    Ok(response)
}

/// A panel body as far as the gateway reads it before running anything: the series are only
/// located, each read when its turn comes.
#[derive(Debug)]
struct ReadPanel {
    model_name: String,
    model_version: Option<String>,
    parameters: Map<String, Value>,
    metadata: Map<String, Value>,
    /// Where each series' JSON lies in the body.
    series: Vec<Range<usize>>,
}

/// Reads what the whole panel shares and where its series are; refuses a panel that is not a
/// list of series (400), or holds none or more than `max_series` (422).
fn read_panel(body: &[u8], max_series: usize) -> Result<ReadPanel, ApiError> {
    #[derive(Deserialize)]
    struct PanelBody<'a> {
        model_name: String,
        #[serde(default)]
        model_version: Option<String>,
        #[serde(borrow, default)]
        data: Option<&'a RawValue>,
        #[serde(default)]
        parameters: Option<Map<String, Value>>,
        #[serde(default)]
        metadata: Option<Map<String, Value>>,
    }
    /// The same shape, owned, read again only to say what is wrong with a body.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct PanelShape {
        model_name: String,
        #[serde(default)]
        model_version: Option<String>,
        #[serde(default)]
        data: Option<IgnoredAny>,
        #[serde(default)]
        parameters: Option<Map<String, Value>>,
        #[serde(default)]
        metadata: Option<Map<String, Value>>,
    }
    let parsed: PanelBody = serde_json::from_slice(body).map_err(|err| {
        ApiError::Malformed(
            parse_json::<PanelShape>(body)
                .err()
                .unwrap_or_else(|| FieldError::new("body", err.to_string())),
        )
    })?;
    let not_a_panel = || {
        ApiError::Malformed(FieldError::new(
            "data",
            "must be a list of series, each a list of numbers (one series goes to /api/v1/inference/run)",
        ))
    };
    let data = parsed.data.ok_or_else(not_a_panel)?;
    let items: Vec<&RawValue> = serde_json::from_str(data.get()).map_err(|_| not_a_panel())?;
    if items.is_empty() {
        return Err(ApiError::Invalid(FieldError::new(
            "data",
            "holds no series",
        )));
    }
    if items.len() > max_series {
        return Err(ApiError::Invalid(FieldError::new(
            "data",
            format!(
                "holds {} series; a panel holds at most {max_series} (ORBIT_PANEL_MAX_SERIES)",
                items.len()
            ),
        )));
    }
    if !items.iter().any(|item| item.get().starts_with('[')) {
        return Err(not_a_panel());
    }
    let series = items
        .iter()
        .map(|item| span_within(body, item.get()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ApiError::Internal("a series outside its own body".into()))?;
    Ok(ReadPanel {
        model_name: parsed.model_name,
        model_version: parsed.model_version,
        parameters: parsed.parameters.unwrap_or_default(),
        metadata: parsed.metadata.unwrap_or_default(),
        series,
    })
}

/// Where `part`, a slice of `whole`, lies in it.
fn span_within(whole: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// One series' values, or why they are not a series: its fields are the series' own (`data`,
/// `data[3]`), as a lone `/run` names them. JSON has no NaN: `null` and the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` stand for the non-finite values a client's data may hold,
/// and are refused as such; anything else that is not a number is malformed.
pub fn read_series(text: &[u8]) -> Result<Vec<f64>, ApiError> {
    if let Ok(values) = serde_json::from_slice::<Vec<f64>>(text) {
        return Ok(values);
    }
    let items: Vec<Value> = serde_json::from_slice(text).map_err(|err| {
        ApiError::Malformed(FieldError::new(
            "data",
            format!("must be a list of numbers: {err}"),
        ))
    })?;
    let bad = items.iter().enumerate().find(|(_, item)| !item.is_number());
    let Some((index, item)) = bad else {
        return Err(ApiError::Malformed(FieldError::new(
            "data",
            "must be a list of numbers",
        )));
    };
    let field = format!("data[{index}]");
    Err(match item {
        Value::Null => ApiError::Invalid(FieldError::new(
            field,
            "must be a finite number (null, a missing value, is not allowed)",
        )),
        Value::String(text) if names_non_finite(text) => ApiError::Invalid(FieldError::new(
            field,
            "must be a finite number (NaN and infinity are not allowed)",
        )),
        other => ApiError::Malformed(FieldError::new(
            field,
            format!("must be a number, not {}", kind(other)),
        )),
    })
}

/// Whether `text` spells NaN or an infinity, as clients' serialisers write them.
fn names_non_finite(text: &str) -> bool {
    let text = text.trim().trim_start_matches(['+', '-']);
    ["nan", "inf", "infinity"]
        .iter()
        .any(|name| text.eq_ignore_ascii_case(name))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// How the client wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One JSON document, `{"panel_id", ..., "results": [...], ...}`.
    Document,
    /// One line per series (`Accept: application/x-ndjson`).
    Lines,
}

impl Format {
    fn asked(headers: &HeaderMap) -> Self {
        let lines = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.contains(NDJSON));
        if lines {
            Self::Lines
        } else {
            Self::Document
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Document => "application/json",
            Self::Lines => NDJSON,
        })
    }
}

/// Writes the answers as they come, and says in the log how the panel went.
struct Encoder {
    format: Format,
    panel_id: String,
    function: String,
    series: usize,
    succeeded: usize,
    failed: usize,
    started: Instant,
}

impl Encoder {
    /// The bytes of one answer: its entry, with the document's head before the first and its
    /// tail after the last.
    fn entry(&mut self, answer: Answer) -> Vec<u8> {
        let Answer {
            index,
            job_id,
            outcome,
        } = answer;
        let entry = match outcome {
            Ok(reply) => {
                self.succeeded += 1;
                json!({"index": index, "job_id": job_id, "status": reply.status,
                    "output": reply.output, "worker_id": reply.worker_id})
            }
            Err(err) => {
                self.failed += 1;
                let prefix = format!("data[{index}]");
                let err = err.renamed(|field| series_field(field, &prefix));
                json!({"index": index, "job_id": job_id, "status": "failed", "error": err.body()})
            }
        };
        let mut out = Vec::new();
        if self.format == Format::Document {
            if index == 0 {
                let head = json!({"panel_id": self.panel_id, "model_name": self.function,
                    "series": self.series})
                .to_string();
                // The head object, left open for the results.
                out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
                out.extend_from_slice(b",\"results\":[");
            } else {
                out.push(b',');
            }
        }
        out.extend_from_slice(entry.to_string().as_bytes());
        match self.format {
            Format::Lines => out.push(b'\n'),
            Format::Document if index + 1 == self.series => {
                let tail = format!(
                    "],\"succeeded\":{},\"failed\":{}}}",
                    self.succeeded, self.failed
                );
                out.extend_from_slice(tail.as_bytes());
            }
            Format::Document => {}
        }
        out
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let answered = self.succeeded + self.failed;
        let seconds = self.started.elapsed().as_secs_f64();
        if answered == self.series {
            tracing::info!(panel_id = %self.panel_id, function = %self.function,
                series = self.series, failed = self.failed, seconds, "panel answered");
        } else {
            tracing::warn!(panel_id = %self.panel_id, function = %self.function,
                series = self.series, answered, seconds,
                "panel stopped before its end: the client went away");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: &ApiError) -> &str {
        err.field().unwrap_or_default()
    }

    #[test]
    fn a_series_reads_in_one_pass_when_it_is_all_numbers() {
        assert_eq!(
            read_series(b"[1, 2.5, -3e2]").unwrap(),
            vec![1.0, 2.5, -300.0]
        );
    }

    #[test]
    fn stand_ins_for_nan_and_infinity_are_invalid_values() {
        for text in [
            &b"[1, null, 3]"[..],
            b"[1, \"NaN\", 3]",
            b"[1, \"-Infinity\"]",
        ] {
            let err = read_series(text).unwrap_err();
            assert!(matches!(err, ApiError::Invalid(_)), "{err:?}");
            assert_eq!(field_of(&err), "data[1]");
            assert!(err.to_string().contains("finite"), "{err}");
        }
    }

    #[test]
    fn anything_else_that_is_no_number_is_malformed() {
        let err = read_series(b"[1, 2, \"x\"]").unwrap_err();
        assert!(matches!(err, ApiError::Malformed(_)), "{err:?}");
        assert_eq!(field_of(&err), "data[2]");
        assert!(err.to_string().contains("a string"), "{err}");
        let err = read_series(b"{\"a\": 1}").unwrap_err();
        assert_eq!(field_of(&err), "data");
        let err = read_series(b"7").unwrap_err();
        assert_eq!(field_of(&err), "data");
    }

    #[test]
    fn a_panel_is_located_without_reading_its_numbers() {
        let body = br#"{"model_name":"f","data":[[1,2],[3,"x"],  [4]],"parameters":{"window":2}}"#;
        let read = read_panel(body, 10).expect("panel");
        assert_eq!(read.model_name, "f");
        assert_eq!(read.parameters["window"], 2);
        let texts: Vec<&[u8]> = read.series.iter().map(|s| &body[s.clone()]).collect();
        assert_eq!(texts, vec![&b"[1,2]"[..], b"[3,\"x\"]", b"[4]"]);
    }

    #[test]
    fn panels_wrong_as_a_whole_are_refused() {
        let status = |body: &[u8]| {
            read_panel(body, 3)
                .map(|_| ())
                .map_err(|err| (err.status_and_code().0.as_u16(), field_of(&err).to_string()))
        };
        assert_eq!(
            status(br#"{"model_name":"f","data":[1,2,3]}"#),
            Err((400, "data".into()))
        );
        assert_eq!(
            status(br#"{"model_name":"f","data":{"a":[1]}}"#),
            Err((400, "data".into()))
        );
        assert_eq!(status(br#"{"model_name":"f"}"#), Err((400, "data".into())));
        assert_eq!(
            status(br#"{"model_name":"f","data":[]}"#),
            Err((422, "data".into()))
        );
        assert_eq!(
            status(br#"{"model_name":"f","data":[[1],[2],[3],[4]]}"#),
            Err((422, "data".into()))
        );
        assert_eq!(
            status(br#"{"model_name":7,"data":[[1]]}"#),
            Err((400, "model_name".into()))
        );
        assert!(matches!(status(br#"{"model_name":"f","#), Err((400, _))));
        // One entry that is no list fails alone, in its turn.
        assert_eq!(status(br#"{"model_name":"f","data":[[1],7]}"#), Ok(()));
    }

    fn encoder(format: Format, series: usize) -> Encoder {
        Encoder {
            format,
            panel_id: "p".into(),
            function: "f".into(),
            series,
            succeeded: 0,
            failed: 0,
            started: Instant::now(),
        }
    }

    fn failed(index: usize) -> Answer {
        Answer {
            index,
            job_id: format!("p-{index}"),
            outcome: Err(ApiError::Invalid(FieldError::new("data[1]", "bad"))),
        }
    }

    #[test]
    fn the_document_is_whole_once_every_series_is_in() {
        let mut encoder = encoder(Format::Document, 2);
        let mut bytes = encoder.entry(failed(0));
        bytes.extend(encoder.entry(failed(1)));
        let document: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(document["panel_id"], "p");
        assert_eq!(document["series"], 2);
        assert_eq!(document["failed"], 2);
        assert_eq!(document["succeeded"], 0);
        assert_eq!(document["results"][1]["index"], 1);
        assert_eq!(document["results"][1]["error"]["field"], "data[1][1]");
        assert_eq!(document["results"][1]["error"]["code"], "invalid_input");
    }

    #[test]
    fn lines_are_one_per_series() {
        let mut encoder = encoder(Format::Lines, 2);
        let mut bytes = encoder.entry(failed(0));
        bytes.extend(encoder.entry(failed(1)));
        let lines: Vec<Value> = bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["job_id"], "p-0");
        assert_eq!(lines[0]["error"]["message"], "data[0][1]: bad");
    }
}
