//! NATS subjects, stream names and header names: the addresses of the data flow.
//!
//! Every component builds subjects through these functions, so renaming one is a one-line change
//! and no component guesses another's naming scheme.

/// Work-queue stream holding accepted jobs until a function acknowledges them.
pub const JOBS_STREAM: &str = "JOBS";
/// Limits-retention stream of result events, read independently by every sink.
pub const RESULTS_STREAM: &str = "RESULTS";
/// Jobs or results that could not be processed after every retry, with the reason.
pub const DEADLETTER_STREAM: &str = "DEADLETTER";

/// Header carrying the job id on a job or result message that holds one (a bundle carries
/// [`crate::bundle::BUNDLE_SIZE_HEADER`] instead; its documents hold their ids).
pub const JOB_ID_HEADER: &str = "Orbit-Job-Id";
/// Key-value bucket of function descriptors, one key per function (its name): what the
/// gateway knows of a function while none of its replicas runs.
pub const FUNCTIONS_BUCKET: &str = "orbit_functions";

/// What a replayed job's message id (`Nats-Msg-Id`) carries after its job id: a job redriven
/// from dead letter `N` is published as `<job id>:redrive:N`, and its results carry the same
/// suffix, so JetStream's duplicate window (keyed on message ids) takes the replay for new
/// work while a retried redrive of the same letter is still stored once.
const REPLAY_MARK: &str = ":redrive:";

/// The message id of job `job_id` replayed from dead letter `letter`.
pub fn replay_message_id(job_id: &str, letter: u64) -> String {
    format!("{job_id}{REPLAY_MARK}{letter}")
}

/// The replay suffix (`:redrive:N`) of a job message's id, if it is a replay.
pub fn replay_suffix(message_id: &str) -> Option<&str> {
    message_id.find(REPLAY_MARK).map(|at| &message_id[at..])
}

/// Header on a dead-lettered message naming why it was dead-lettered.
pub const DEADLETTER_REASON_HEADER: &str = "Orbit-Deadletter-Reason";

/// Subject a job for `function` is published on (captured by [`JOBS_STREAM`]).
pub fn job_subject(function: &str) -> String {
    format!("orbit.jobs.{function}")
}

/// Subject of the NATS micro service endpoint answering synchronous calls of `function`.
pub fn function_subject(function: &str) -> String {
    format!("orbit.fn.{function}")
}

/// Subject a result of `function` is published on (captured by [`RESULTS_STREAM`]).
pub fn result_subject(function: &str) -> String {
    format!("orbit.results.{function}")
}

/// Subject a poison message of `function` is dead-lettered on.
pub fn deadletter_subject(function: &str) -> String {
    format!("orbit.deadletter.{function}")
}

/// Core NATS subject on which a worker announces the job ids it started, so the job cache can
/// show `running`. Best effort: losing one only hides the `running` state of those jobs.
pub fn started_subject(function: &str) -> String {
    format!("orbit.events.started.{function}")
}

/// The function a [`started_subject`] names; `None` for any other subject.
pub fn started_function(subject: &str) -> Option<&str> {
    subject
        .strip_prefix("orbit.events.started.")
        .filter(|function| crate::descriptor::check_name(function).is_ok())
}

/// Wildcard matching every `started` event.
pub const STARTED_WILDCARD: &str = "orbit.events.started.*";
/// Wildcards captured by each stream.
pub const JOBS_WILDCARD: &str = "orbit.jobs.*";
pub const RESULTS_WILDCARD: &str = "orbit.results.*";
pub const DEADLETTER_WILDCARD: &str = "orbit.deadletter.*";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_subjects_name_their_function() {
        let subject = started_subject("moving_average");
        assert_eq!(started_function(&subject), Some("moving_average"));
        assert_eq!(started_function("orbit.events.started."), None);
        assert_eq!(started_function("orbit.events.started.a.b"), None);
        assert_eq!(started_function("orbit.events.started.a b"), None);
        assert_eq!(started_function("orbit.results.moving_average"), None);
    }
}
