//! `orbit deploy`: the deployment files generated from the manifest (orbit_stack::deploy).

use std::path::PathBuf;

use clap::Subcommand;

use crate::fail::Failure;
use crate::local::open;
use crate::Target;

#[derive(Subcommand)]
pub enum DeployVerb {
    /// Write compose.yaml, deploy/k8s/, deploy/nats/users.conf, deploy/prometheus/prometheus.yml
    /// and .env.example from stack.toml and nats/permissions.toml
    Generate,
    /// The committed files are what `generate` writes, valid (Compose schema, hadolint,
    /// Kubernetes schemas) and documented in docs/configuration.md
    Check {
        /// Where scripts/install-deploy-tools.sh put the validators
        #[arg(long, env = "ORBIT_DEPLOY_TOOLS")]
        tools: Option<PathBuf>,
    },
    /// Write FILE (default .env) with a fresh random value for every secret compose.yaml needs;
    /// never overwrites one
    Env { file: Option<PathBuf> },
    /// The environment compose.yaml gives SERVICE with ENV_FILE's values, as JSON
    Environment { service: String, env_file: PathBuf },
}

pub fn run(target: &Target, verb: &DeployVerb) -> Result<(), Failure> {
    let (layout, _) = open(target)?;
    let root = &layout.root;
    let failed = |err: orbit_stack::deploy::DeployError| Failure::Local(err.to_string());
    match verb {
        DeployVerb::Generate => {
            for line in orbit_stack::deploy::write_generated(root).map_err(failed)? {
                println!("{line}");
            }
            Ok(())
        }
        DeployVerb::Check { tools } => {
            let tools = tools
                .clone()
                .unwrap_or_else(|| layout.tools().join("deploy"));
            let problems = orbit_stack::deploy::check(root, &tools).map_err(failed)?;
            for problem in &problems {
                eprintln!("deploy check: {problem}");
            }
            if problems.is_empty() {
                println!("deploy check: compose.yaml, the Dockerfile and deploy/k8s are current, valid and documented");
                Ok(())
            } else {
                Err(Failure::Refused(format!(
                    "{} problems in the deployment files",
                    problems.len()
                )))
            }
        }
        DeployVerb::Env { file } => {
            let path = file.clone().unwrap_or_else(|| root.join(".env"));
            orbit_stack::deploy::write_env(root, &path).map_err(failed)?;
            println!("wrote {} (mode 600)", path.display());
            Ok(())
        }
        DeployVerb::Environment { service, env_file } => {
            let environment =
                orbit_stack::deploy::environment(root, service, env_file).map_err(failed)?;
            let text = serde_json::to_string(&environment)
                .map_err(|err| Failure::Local(err.to_string()))?;
            println!("{text}");
            Ok(())
        }
    }
}
