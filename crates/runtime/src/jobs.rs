//! Publishing jobs to JOBS, the one way every entry point (the gateway, the Kafka inbound
//! bridge) does it. A job published alone has its job id as `Nats-Msg-Id`, so a retried
//! publish inside the duplicate window is stored once; jobs that arrive together travel as a
//! bundle ([`orbit_contract::bundle`]) under the bundle's id, with the same effect.

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::Utc;
use orbit_contract::bundle::{self, BUNDLE_SIZE_HEADER};
use orbit_contract::subjects::{job_subject, JOB_ID_HEADER};
use orbit_contract::{FieldError, FunctionSpec, JobId, JobRequest, ValidJob};

/// A checked job, encoded and ready to publish.
#[derive(Debug, Clone)]
pub struct Submission {
    pub job_id: JobId,
    /// The function it is for.
    pub function: String,
    pub payload: Bytes,
    /// The job's trace context, also sent as the `traceparent` header when it travels alone.
    pub traceparent: Option<String>,
}

impl Submission {
    /// Checks `request` against `spec` (its function's declaration) and wraps it in the JOBS
    /// envelope under `job_id`.
    pub fn prepare(
        request: JobRequest,
        spec: &FunctionSpec,
        job_id: JobId,
    ) -> Result<Self, FieldError> {
        Self::of_job(ValidJob::parse(request, spec)?, job_id)
    }

    /// Wraps a checked job in the JOBS envelope under `job_id`.
    pub fn of_job(job: ValidJob, job_id: JobId) -> Result<Self, FieldError> {
        let function = job.function.clone();
        let mut envelope = job.into_envelope(job_id.clone(), Utc::now());
        // The request's trace, when the door that took it is traced (crate::traces).
        envelope.traceparent = crate::traces::current().map(|trace| trace.header());
        let payload = serde_json::to_vec(&envelope)
            .map_err(|err| FieldError::new("body", format!("cannot encode job: {err}")))?;
        Ok(Self {
            job_id,
            function,
            payload: payload.into(),
            traceparent: envelope.traceparent,
        })
    }

    /// Sends the job; the returned future resolves with JetStream's ack.
    pub async fn publish(&self, js: &Context) -> Result<PublishAckFuture, PublishError> {
        self.publish_as(js, self.job_id.as_str()).await
    }

    /// Sends the job as message `message_id`: a replay of a job JetStream has already seen
    /// (a redriven dead letter) needs an id of its own, or the duplicate window drops it.
    pub async fn publish_as(
        &self,
        js: &Context,
        message_id: &str,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id);
        headers.insert(JOB_ID_HEADER, self.job_id.as_str());
        if let Some(traceparent) = &self.traceparent {
            headers.insert(crate::traces::TRACEPARENT, traceparent.as_str());
        }
        js.publish_with_headers(job_subject(&self.function), headers, self.payload.clone())
            .await
    }
}

/// The most jobs one JOBS message bundles, and about the most bytes: a bundle's results (the
/// input again, plus the output) must still fit a NATS server's default 1 MB `max_payload`.
pub const MAX_JOB_BUNDLE: usize = 256;
pub const MAX_JOB_BUNDLE_BYTES: usize = 256 * 1024;

/// Groups `submissions` into JOBS messages: indices into `submissions`, one group per message.
/// `bundled` puts jobs of the same function together (up to the limits above); otherwise
/// every job is a message of its own, keeping its id as `Nats-Msg-Id` (what a client's
/// `Idempotency-Key` relies on).
pub fn parcels(submissions: &[Submission], bundled: bool) -> Vec<Vec<usize>> {
    if !bundled {
        return (0..submissions.len()).map(|index| vec![index]).collect();
    }
    let mut by_model: Vec<(&str, Vec<usize>)> = Vec::new();
    for (index, submission) in submissions.iter().enumerate() {
        match by_model
            .iter_mut()
            .find(|(function, _)| *function == submission.function)
        {
            Some((_, members)) => members.push(index),
            None => by_model.push((&submission.function, vec![index])),
        }
    }
    let mut parcels = Vec::new();
    for (_, members) in by_model {
        let sizes: Vec<usize> = members
            .iter()
            .map(|&index| submissions[index].payload.len())
            .collect();
        for range in bundle::ranges(&sizes, MAX_JOB_BUNDLE, MAX_JOB_BUNDLE_BYTES) {
            parcels.push(members[range].to_vec());
        }
    }
    parcels
}

/// Sends one parcel of [`parcels`]: a lone job as itself, several as a bundle.
pub async fn publish_parcel(
    js: &Context,
    submissions: &[Submission],
    members: &[usize],
) -> Result<PublishAckFuture, PublishError> {
    let [first, ..] = members else {
        return Err(PublishError::new(
            async_nats::jetstream::context::PublishErrorKind::Other,
        ));
    };
    let lead = &submissions[*first];
    if members.len() == 1 {
        return lead.publish(js).await;
    }
    let payload = bundle::join(
        members
            .iter()
            .map(|&index| submissions[index].payload.as_ref()),
    );
    let mut headers = HeaderMap::new();
    let id = bundle::bundle_id(lead.job_id.as_str(), members.len());
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert(BUNDLE_SIZE_HEADER, members.len().to_string().as_str());
    js.publish_with_headers(job_subject(&lead.function), headers, payload.into())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbit_contract::{Datatype, FunctionDescriptor, InputKind, JobRequest, Limits, TensorSpec};

    fn spec(name: &str) -> FunctionSpec {
        FunctionSpec::new(FunctionDescriptor {
            name: name.into(),
            version: "1".into(),
            versions: Vec::new(),
            description: "d".into(),
            platform: "orbit".into(),
            input: InputKind::Series,
            parameters: serde_json::json!({"type": "object"}),
            inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
            outputs: vec![],
            limits: Limits::default(),
            example: None,
        })
        .expect("spec")
    }

    fn submission(model: &str, index: usize) -> Submission {
        let request: JobRequest = serde_json::from_value(serde_json::json!({
            "model_name": model,
            "data": (0..64).map(f64::from).collect::<Vec<_>>(),
        }))
        .expect("request");
        Submission::prepare(
            request,
            &spec(model),
            JobId::parse(&format!("job-{index}"), "id").expect("id"),
        )
        .expect("valid")
    }

    #[test]
    fn parcels_keep_one_function_per_message_and_respect_the_limit() {
        let submissions: Vec<Submission> = (0..600)
            .map(|i| {
                submission(
                    if i % 3 == 0 {
                        "lstm_timeseries"
                    } else {
                        "moving_average"
                    },
                    i,
                )
            })
            .collect();
        let parcels = parcels(&submissions, true);
        let mut seen: Vec<usize> = parcels.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..600).collect::<Vec<_>>(), "every job exactly once");
        for parcel in &parcels {
            assert!(parcel.len() <= MAX_JOB_BUNDLE);
            let function = &submissions[parcel[0]].function;
            assert!(parcel.iter().all(|&i| &submissions[i].function == function));
        }
        assert!(
            parcels.len() < 10,
            "bundled, not one per job: {}",
            parcels.len()
        );
        assert_eq!(super::parcels(&submissions, false).len(), 600);
    }
}
