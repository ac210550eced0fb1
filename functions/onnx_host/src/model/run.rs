//! How jobs run on a loaded version: series cut to their context, prepared and grouped by
//! length (no padding), tensors stacked into as few graph calls as fit, and the outputs
//! decoded back into each job's answer.

use std::collections::BTreeMap;

use orbit_contract::{Datatype, JobFailure, Tensor};
use orbit_runtime::Job;
use serde_json::{json, Map, Value};

use crate::config::{ModelConfig, OutputConfig, Processing};
use crate::processing::{context, identity, standardise, Prepared};
use crate::session::OnnxSession;

use super::series_input;

/// Runs series jobs: each series cut to its context and prepared, grouped by length (one graph
/// call per length and chunk, so there is no padding, and no padded value can change a
/// result), then mapped back.
pub(super) fn run_series(
    session: &OnnxSession,
    config: &ModelConfig,
    input_name: Option<&str>,
    processing: Processing,
    max_context: Option<usize>,
    jobs: Vec<&Job<Map<String, Value>>>,
) -> Vec<Result<Value, JobFailure>> {
    let mut results: Vec<Result<Value, JobFailure>> =
        vec![Err(JobFailure::no_output()); jobs.len()];
    let input = match series_input(session, input_name) {
        Ok(input) => input.clone(),
        Err(reason) => return vec![Err(JobFailure::function_error(reason)); jobs.len()],
    };
    let mut groups: BTreeMap<usize, Vec<(usize, Prepared)>> = BTreeMap::new();
    for (index, job) in jobs.iter().enumerate() {
        match job.series() {
            Ok(series) => {
                let window = context(series.values(), max_context);
                let prepared = match processing {
                    Processing::Standardise => standardise(window),
                    Processing::None => identity(window),
                };
                groups
                    .entry(window.len())
                    .or_default()
                    .push((index, prepared));
            }
            Err(failure) => results[index] = Err(failure),
        }
    }
    let chunk_rows = config.batching.chunk_rows.max(1);
    for (length, members) in groups {
        for chunk in members.chunks(chunk_rows) {
            let rows: Vec<f64> = chunk
                .iter()
                .flat_map(|(_, p)| p.values.iter().copied())
                .collect();
            let shape = vec![chunk.len(), length];
            let tensor = match input.datatype {
                Datatype::Fp64 => Tensor::from_f64(&input.name, shape, &rows),
                _ => Tensor::from_f32(
                    &input.name,
                    shape,
                    &rows.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                ),
            };
            let outcome = tensor
                .map_err(|err| err.to_string())
                .and_then(|tensor| session.run(&[tensor]).map_err(|err| err.to_string()));
            match outcome {
                Ok(outputs) => {
                    let decoded = Decoded::new(config, &outputs);
                    for (row, (index, prepared)) in chunk.iter().enumerate() {
                        results[*index] = decoded.answer(
                            row,
                            chunk.len(),
                            prepared,
                            length,
                            &jobs[*index].params,
                        );
                    }
                }
                Err(reason) => {
                    for (index, _) in chunk {
                        results[*index] = Err(JobFailure::function_error(reason.clone()));
                    }
                }
            }
        }
    }
    results
}

/// A graph call's outputs, ready to be split into one answer per row. A forecast output is
/// decoded to `f64` once per call, not once per row (that made a 64-row call twice as slow).
enum Decoded<'a> {
    Forecast(Result<Vec<f64>, JobFailure>),
    Tensors(&'a [Tensor]),
}

impl<'a> Decoded<'a> {
    fn new(config: &ModelConfig, outputs: &'a [Tensor]) -> Self {
        match &config.output {
            OutputConfig::Forecast { tensor, .. } => Decoded::Forecast(
                match tensor {
                    Some(name) => outputs.iter().find(|t| t.name() == name),
                    None => outputs.first(),
                }
                .map(Tensor::to_f64)
                .ok_or_else(|| JobFailure::function_error("the forecast output is missing")),
            ),
            OutputConfig::Tensors => Decoded::Tensors(outputs),
        }
    }

    /// One series' answer from row `row` of the call's `rows`.
    fn answer(
        &self,
        row: usize,
        rows: usize,
        prepared: &Prepared,
        length: usize,
        params: &Map<String, Value>,
    ) -> Result<Value, JobFailure> {
        match self {
            Decoded::Forecast(values) => {
                let values = values.as_ref().map_err(Clone::clone)?;
                let steps = values.len() / rows.max(1);
                if steps == 0 || values.len() != steps * rows {
                    return Err(JobFailure::function_error(format!(
                        "the model returned {} values for {rows} series",
                        values.len()
                    )));
                }
                let horizon = params
                    .get("horizon")
                    .and_then(Value::as_u64)
                    .map_or(steps, |h| h as usize)
                    .min(steps);
                let forecast: Vec<f64> = values[row * steps..row * steps + horizon]
                    .iter()
                    .map(|&v| v * prepared.std + prepared.mean)
                    .collect();
                if !forecast.iter().all(|v| v.is_finite()) {
                    return Err(JobFailure::overflow());
                }
                Ok(json!({
                    "next": forecast[0],
                    "forecast": forecast,
                    "horizon": horizon,
                    "context_length": length,
                }))
            }
            Decoded::Tensors(outputs) => {
                let tensors = outputs
                    .iter()
                    .map(|t| {
                        t.rows(row, row + 1).ok_or_else(|| {
                            JobFailure::function_error(format!(
                                "output {} does not have one row per series",
                                t.name()
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(outputs_json(&tensors))
            }
        }
    }
}

/// Tensors as an answer: `{"outputs": [{"name", "datatype", "shape", "data"}]}`, the Open
/// Inference Protocol's output shape.
pub fn outputs_json(tensors: &[Tensor]) -> Value {
    json!({
        "outputs": tensors.iter().map(|t| json!({
            "name": t.name(),
            "datatype": t.datatype().as_str(),
            "shape": t.shape(),
            "data": t.to_json_data(),
        })).collect::<Vec<_>>()
    })
}

/// Runs tensor jobs. When every graph input has a free first dimension and the jobs' tensors
/// agree on the rest, jobs are stacked along it into one call (up to `chunk_rows` rows) and
/// the outputs split back by rows; otherwise each job is its own call.
pub(super) fn run_tensors(
    session: &OnnxSession,
    chunk_rows: usize,
    jobs: Vec<&Job<Map<String, Value>>>,
) -> Vec<Result<Value, JobFailure>> {
    let stackable = session
        .inputs
        .iter()
        .all(|spec| spec.shape.first() == Some(&-1));
    let mut results: Vec<Result<Value, JobFailure>> =
        vec![Err(JobFailure::no_output()); jobs.len()];
    // Jobs whose inputs have the same trailing shapes can share a call.
    let mut groups: BTreeMap<Vec<Vec<usize>>, Vec<usize>> = BTreeMap::new();
    for (index, job) in jobs.iter().enumerate() {
        let key = if stackable {
            session
                .inputs
                .iter()
                .map(|spec| {
                    job.input
                        .tensor(&spec.name)
                        .map_or_else(Vec::new, |t| t.shape()[1..].to_vec())
                })
                .collect()
        } else {
            vec![vec![index]]
        };
        groups.entry(key).or_default().push(index);
    }
    for members in groups.into_values() {
        let mut start = 0;
        while start < members.len() {
            let mut end = start;
            let mut rows = 0;
            while end < members.len()
                && (end == start || rows + first_dim(jobs[members[end]]) <= chunk_rows)
            {
                rows += first_dim(jobs[members[end]]);
                end += 1;
            }
            let call = &members[start..end];
            for (index, result) in call.iter().zip(run_stacked(
                session,
                call.iter().map(|&i| jobs[i]).collect(),
            )) {
                results[*index] = result;
            }
            start = end;
        }
    }
    results
}

fn first_dim(job: &Job<Map<String, Value>>) -> usize {
    job.input
        .tensors()
        .first()
        .and_then(|t| t.shape().first().copied())
        .unwrap_or(1)
}

/// One graph call for `jobs`, their tensors concatenated along the first dimension.
fn run_stacked(
    session: &OnnxSession,
    jobs: Vec<&Job<Map<String, Value>>>,
) -> Vec<Result<Value, JobFailure>> {
    let fail = |reason: String| vec![Err(JobFailure::function_error(reason)); jobs.len()];
    let mut inputs = Vec::with_capacity(session.inputs.len());
    let mut counts = Vec::new();
    for spec in &session.inputs {
        let parts: Vec<&Tensor> = match jobs
            .iter()
            .map(|job| job.input.tensor(&spec.name))
            .collect::<Option<Vec<_>>>()
        {
            Some(parts) => parts,
            None => return fail(format!("input {} is missing", spec.name)),
        };
        if counts.is_empty() {
            counts = parts
                .iter()
                .map(|t| t.shape().first().copied().unwrap_or(1))
                .collect();
        }
        if parts.len() == 1 {
            inputs.push(parts[0].clone());
            continue;
        }
        let mut shape = parts[0].shape().to_vec();
        shape[0] = parts.iter().map(|t| t.shape()[0]).sum();
        let bytes: Vec<u8> = parts
            .iter()
            .flat_map(|t| t.bytes().iter().copied())
            .collect();
        match Tensor::from_bytes(&spec.name, spec.datatype, shape, bytes.into(), &spec.name) {
            Ok(tensor) => inputs.push(tensor),
            Err(err) => return fail(err.to_string()),
        }
    }
    let outputs = match session.run(&inputs) {
        Ok(outputs) => outputs,
        Err(err) => return fail(err.to_string()),
    };
    if jobs.len() == 1 {
        return vec![Ok(outputs_json(&outputs))];
    }
    let total: usize = counts.iter().sum();
    let mut results = Vec::with_capacity(jobs.len());
    let mut start = 0;
    for count in counts {
        let split: Option<Vec<Tensor>> = outputs
            .iter()
            .map(|t| {
                (t.shape().first() == Some(&total))
                    .then(|| t.rows(start, start + count))
                    .flatten()
            })
            .collect();
        match split {
            Some(tensors) => results.push(Ok(outputs_json(&tensors))),
            // An output without a row per input row (a graph that reduces over the batch):
            // the jobs run one by one instead.
            None => {
                return jobs
                    .into_iter()
                    .flat_map(|job| run_stacked(session, vec![job]))
                    .collect()
            }
        }
        start += count;
    }
    results
}
