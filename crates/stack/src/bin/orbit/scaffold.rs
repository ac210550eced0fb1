//! `orbit fn new NAME`: a new Rust function crate from a template (a working function with
//! its declaration, an example and the conformance test every function passes), its
//! `stack.toml` entry, and the deployment files regenerated: after `orbit up` it is served
//! through every door with nothing else edited.

use std::path::Path;

use clap::Subcommand;
use orbit_stack::Manifest;

use crate::fail::{local, Failure};
use crate::local::open;
use crate::Target;

#[derive(Subcommand)]
pub enum FnVerb {
    /// A new function crate under functions/NAME, its stack.toml entry and the regenerated
    /// deployment files
    New {
        /// The function's name: lower-case letters, digits and _, starting with a letter
        name: String,
        /// How many replicas `orbit up` starts
        #[arg(long, default_value_t = 1)]
        replicas: u32,
    },
}

pub fn run(target: &Target, verb: &FnVerb) -> Result<(), Failure> {
    match verb {
        FnVerb::New { name, replicas } => new(target, name, *replicas),
    }
}

fn check_name(name: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || name.len() > 64
    {
        return Err(Failure::Usage(format!(
            "{name:?}: a function name is lower-case letters, digits and _, starting with a letter (at most 64)"
        )));
    }
    Ok(())
}

/// `moving_average` -> `MovingAverage`.
fn type_name(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The first free block of ten metrics ports for `replicas` replicas, from 9160 on, clear of
/// every process's and of the bridge's and Elasticsearch's ports (9190, 9200).
fn free_metrics_port(manifest: &Manifest, replicas: u32) -> Result<u16, Failure> {
    let taken: Vec<u32> = manifest
        .processes
        .iter()
        .flat_map(orbit_stack::Process::metrics_ports)
        .collect();
    (9160u32..9990)
        .step_by(10)
        .filter(|p| !(9190..9210).contains(p))
        .find(|p| (*p..*p + replicas).all(|port| !taken.contains(&port)))
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| Failure::Local("no free block of metrics ports under 9990".into()))
}

/// The manifest's text with `entry` placed before the gateway's (it stays last).
fn with_entry(text: &str, entry: &str) -> Result<String, Failure> {
    // Entries start at a line that is exactly `[[process]]` (comments may mention it too).
    let blocks: Vec<usize> = text
        .match_indices("[[process]]")
        .map(|(at, _)| at)
        .filter(|&at| at == 0 || text[..at].ends_with('\n'))
        .filter(|&at| text[at + "[[process]]".len()..].starts_with('\n'))
        .collect();
    let gateway = blocks
        .iter()
        .copied()
        .find(|&at| {
            let end = blocks
                .iter()
                .copied()
                .find(|&next| next > at)
                .unwrap_or(text.len());
            text[at..end].contains("kind = \"gateway\"")
        })
        .ok_or_else(|| Failure::Local("stack.toml has no gateway entry".into()))?;
    Ok(format!("{}{entry}\n{}", &text[..gateway], &text[gateway..]))
}

fn new(target: &Target, name: &str, replicas: u32) -> Result<(), Failure> {
    check_name(name)?;
    if replicas == 0 {
        return Err(Failure::Usage("--replicas must be at least 1".into()));
    }
    let (layout, manifest) = open(target)?;
    let root = &layout.root;
    if manifest.get(name).is_some() {
        return Err(Failure::Usage(format!(
            "stack.toml already has a process {name}"
        )));
    }
    let dir = root.join("functions").join(name);
    if dir.exists() {
        return Err(Failure::Usage(format!("{} exists", dir.display())));
    }
    let port = free_metrics_port(&manifest, replicas)?;
    let entry = format!(
        "[[process]]\nname = \"{name}\"\nbinary = \"{name}\"\nkind = \"function\"\nreplicas = {replicas}\nmetrics = {port}\nexample = {{ parameters = {{ factor = 2 }} }}\n"
    );
    let manifest_path = root.join("stack.toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(local("stack.toml"))?;
    let updated = with_entry(&text, &entry)?;
    // The new manifest must be one the stack accepts before anything is written.
    Manifest::parse(&updated)?;

    write(&dir.join("Cargo.toml"), &cargo_toml(name))?;
    write(&dir.join("src/main.rs"), &main_rs(name))?;
    std::fs::write(&manifest_path, updated).map_err(local("stack.toml"))?;
    println!("wrote functions/{name}/Cargo.toml, functions/{name}/src/main.rs");
    println!("added {name} to stack.toml (metrics port {port})");
    for line in orbit_stack::deploy::write_generated(root).map_err(local("deployment files"))? {
        println!("{line}");
    }
    println!(
        "\nNext:\n  cargo test -p {name}      # the conformance test every function passes\n  orbit up                   # builds and serves it\n  orbit invoke {name} --data '[1,2,3]' --parameters '{{\"factor\":2}}'\n  orbit invoke {name} --data '[1,2,3]' --via nats"
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).map_err(local(path.display()))
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version.workspace = true
edition.workspace = true
license.workspace = true

[dependencies]
orbit-contract.workspace = true
orbit-runtime.workspace = true
serde.workspace = true
serde_json.workspace = true
"#
    )
}

fn main_rs(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r##"//! `{name}`: scales every point of a series by `factor`. Written by `orbit fn new`: change
//! the descriptor and `call` to make it yours; the test at the bottom is the conformance check
//! every function passes (`cargo test -p {name}`).

use orbit_contract::{{Datatype, FunctionDescriptor, InputKind, JobFailure, Limits, TensorSpec}};
use orbit_runtime::{{Function, Job}};
use serde::Deserialize;
use serde_json::{{json, Value}};

#[global_allocator]
static ALLOCATOR: orbit_runtime::Allocator = orbit_runtime::Allocator;

/// The parameters, deserialized after the schema below accepted them (defaults filled in).
#[derive(Deserialize)]
struct Params {{
    factor: f64,
}}

struct {ty};

impl Function for {ty} {{
    type Params = Params;

    fn descriptor(&self) -> FunctionDescriptor {{
        FunctionDescriptor {{
            name: "{name}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            versions: Vec::new(),
            description: "Scales every point of a series by a factor".into(),
            platform: "orbit".into(),
            input: InputKind::Series,
            parameters: json!({{
                "type": "object",
                "additionalProperties": false,
                "properties": {{
                    "factor": {{"type": "number", "default": 1}}
                }}
            }}),
            inputs: vec![TensorSpec::new("data", Datatype::Fp64, vec![-1])],
            outputs: vec![TensorSpec::new("values", Datatype::Fp64, vec![-1])],
            limits: Limits::default(),
            example: Some(json!({{"data": [1, 2, 3], "parameters": {{"factor": 2}}}})),
        }}
    }}

    fn call(&self, job: &Job<Params>) -> Result<Value, JobFailure> {{
        let factor = job.params.factor;
        let values: Vec<f64> = job.series()?.values().iter().map(|v| v * factor).collect();
        Ok(json!({{ "values": values }}))
    }}

    fn is_cheap(&self, _job: &Job<Params>) -> bool {{
        true // microseconds: run on the async threads, no hop to the blocking pool
    }}
}}

fn main() -> std::process::ExitCode {{
    orbit_runtime::cli::main(|| Ok::<_, std::convert::Infallible>({ty}))
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn conforms() {{
        let output = orbit_runtime::conformance::check(&{ty}).expect("conforms");
        assert_eq!(output, json!({{"values": [2.0, 4.0, 6.0]}}));
    }}

    #[test]
    fn a_parameter_it_does_not_declare_is_refused() {{
        let refused = Job::from_body(&{ty}, br#"{{"data": [1], "parameters": {{"scale": 2}}}}"#);
        assert!(refused.is_err());
    }}
}}
"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_entries() {
        assert_eq!(type_name("moving_average"), "MovingAverage");
        assert!(
            check_name("Bad").is_err() && check_name("9x").is_err() && check_name("ok_1").is_ok()
        );
        let text = "[[process]]\nname = \"a\"\nkind = \"sink\"\n\n# the door\n[[process]]\nname = \"gateway\"\nkind = \"gateway\"\n";
        let out = with_entry(text, "[[process]]\nname = \"b\"\n").expect("gateway found");
        assert!(out.find("name = \"b\"") < out.find("name = \"gateway\""));
    }
}
