//! `deploy/k8s/`: Orbit's own workloads on Kubernetes, applied with kustomize. One
//! Deployment per process (plus a Service for the gateway and the bridge, and a
//! HorizontalPodAutoscaler on the backlog for each function), the ConfigMap of the settings
//! every process reads, the migrations as a Job, and prometheus-adapter's rule that serves the
//! backlog. NATS, Postgres, Redis, Kafka and Elasticsearch come from their own operators or
//! charts; the Secret orbit-secrets is made from `.env`.

use serde_yaml::Value;

use crate::credentials;
use crate::manifest::{Kind, Process};

use super::process::{self as proc, Probe, Target, PG_OWNER};
use super::yaml::{self, map, strings};
use super::{DeployError, Stack, HEADER};

/// Non-secret settings every process reads, kept in the ConfigMap orbit-config.
const CONFIG: [(&str, &str); 5] = [
    ("ORBIT_NATS_URL", "nats://nats:4222"),
    // Empty: no traces; an OTLP/HTTP collector's URL turns them on.
    ("ORBIT_OTLP_ENDPOINT", ""),
    ("ORBIT_STREAM_REPLICAS", "3"),
    ("ORBIT_KAFKA_BROKERS", "kafka:9092"),
    ("ORBIT_ELASTICSEARCH_URL", "http://elasticsearch:9200"),
];

/// The file not in the kustomization: it configures prometheus-adapter, in its namespace.
const ADAPTER: &str = "prometheus-adapter.yaml";
const KUSTOMIZATION: &str = "kustomization.yaml";

/// The user and group the images run as (distroless `nonroot`).
const NONROOT: u32 = 65532;

fn labels(name: &str) -> Value {
    map([
        ("app.kubernetes.io/name", name.into()),
        ("app.kubernetes.io/part-of", "orbit".into()),
    ])
}

fn metadata(name: &str, label: &str) -> Value {
    map([("name", name.into()), ("labels", labels(label))])
}

/// A process's name as a Kubernetes object name (DNS: no `_`).
fn dns(name: &str) -> String {
    name.replace('_', "-")
}

/// An environment variable taken from the key of the same name of a ConfigMap or Secret.
fn from_key(variable: &str) -> Value {
    let (source, object) = if CONFIG.iter().any(|(k, _)| *k == variable) {
        ("configMapKeyRef", "orbit-config")
    } else {
        ("secretKeyRef", "orbit-secrets")
    };
    map([
        ("name", variable.into()),
        (
            "valueFrom",
            map([(
                source,
                map([("name", object.into()), ("key", variable.into())]),
            )]),
        ),
    ])
}

fn value(name: &str, value: &str) -> Value {
    map([("name", name.into()), ("value", value.into())])
}

/// Requests are a quarter of the limits.
fn resources(process: &Process) -> Value {
    let (cpus, mebibytes) = proc::limits(process);
    map([
        (
            "limits",
            map([
                ("cpu", cpus.to_string().into()),
                ("memory", proc::memory(mebibytes).into()),
            ]),
        ),
        (
            "requests",
            map([
                ("cpu", format!("{}m", cpus * 250).into()),
                ("memory", format!("{}Mi", mebibytes / 4).into()),
            ]),
        ),
    ])
}

/// The documents of one process: its Deployment, and its Service or autoscaler.
fn workload(process: &Process, stack: &Stack) -> Result<Vec<Value>, DeployError> {
    let name = process.name.as_str();
    let dns = dns(name);
    let port = proc::metrics_port(process)?;
    let environment = proc::environment(process, &stack.users, Target::Kubernetes)?;
    let mut env: Vec<Value> = proc::references(&environment)
        .iter()
        .map(|variable| from_key(variable))
        .collect();
    // A setting that is the ConfigMap's value as it stands comes from there alone.
    env.extend(
        environment
            .iter()
            .filter(|(k, v)| **v != format!("$({k})"))
            .map(|(k, v)| value(k, v)),
    );
    let probe = |probe: Probe| -> Result<Value, DeployError> {
        Ok(map([
            (
                "exec",
                map([(
                    "command",
                    strings(&[
                        "/usr/local/bin/orbit-probe",
                        &proc::health_url(process, probe)?,
                    ]),
                )]),
            ),
            ("periodSeconds", 5.into()),
            ("timeoutSeconds", 3.into()),
            ("failureThreshold", 6.into()),
        ]))
    };
    let mut liveness = probe(Probe::Live)?;
    if let Value::Mapping(liveness) = &mut liveness {
        liveness.insert("initialDelaySeconds".into(), 10.into());
    }
    let mut served = proc::served_ports(process);
    if served.is_empty() {
        served.push(("metrics", port));
    }
    let container_ports: Vec<Value> = served
        .iter()
        .map(|(name, port)| map([("name", (*name).into()), ("containerPort", (*port).into())]))
        .collect();
    let service_ports: Vec<Value> = served
        .iter()
        .map(|(name, port)| {
            map([
                ("name", (*name).into()),
                ("port", (*port).into()),
                ("targetPort", (*port).into()),
            ])
        })
        .collect();
    let mut container = map([
        ("name", dns.as_str().into()),
        ("image", proc::k8s_image(process)?.into()),
        ("env", Value::Sequence(env)),
        ("ports", Value::Sequence(container_ports)),
        ("readinessProbe", probe(Probe::Ready)?),
        ("livenessProbe", liveness),
        ("resources", resources(process)),
        (
            "securityContext",
            map([
                ("runAsNonRoot", true.into()),
                ("runAsUser", NONROOT.into()),
                ("runAsGroup", NONROOT.into()),
                ("readOnlyRootFilesystem", true.into()),
                ("allowPrivilegeEscalation", false.into()),
                ("capabilities", map([("drop", strings(&["ALL"]))])),
            ]),
        ),
    ]);
    // A Python function's image is Python's; the container says which file it runs.
    if let (Some(command), Value::Mapping(container)) = (proc::command(process), &mut container) {
        container.insert("command".into(), strings(command));
    }
    let selector = || map([("app.kubernetes.io/name", name.into())]);
    let template = map([
        (
            "metadata",
            map([
                ("labels", labels(name)),
                (
                    "annotations",
                    map([
                        ("prometheus.io/scrape", "true".into()),
                        ("prometheus.io/port", port.to_string().into()),
                    ]),
                ),
            ]),
        ),
        (
            "spec",
            map([
                ("terminationGracePeriodSeconds", 30.into()),
                (
                    "securityContext",
                    map([("seccompProfile", map([("type", "RuntimeDefault".into())]))]),
                ),
                ("containers", Value::Sequence(vec![container])),
            ]),
        ),
    ]);
    // A replaced pod drains (SIGTERM: finish what it pulled) before it goes; JetStream
    // redelivers whatever a killed one held, so an upgrade loses no job.
    let strategy = map([
        ("type", "RollingUpdate".into()),
        (
            "rollingUpdate",
            map([("maxUnavailable", 0.into()), ("maxSurge", 1.into())]),
        ),
    ]);
    let deployment = map([
        ("apiVersion", "apps/v1".into()),
        ("kind", "Deployment".into()),
        ("metadata", metadata(&dns, name)),
        (
            "spec",
            map([
                ("replicas", process.replicas.into()),
                ("selector", map([("matchLabels", selector())])),
                ("strategy", strategy),
                ("template", template),
            ]),
        ),
    ]);
    let mut documents = vec![deployment];
    match process.kind {
        Kind::Gateway | Kind::Bridge => documents.push(map([
            ("apiVersion", "v1".into()),
            ("kind", "Service".into()),
            ("metadata", metadata(&dns, name)),
            (
                "spec",
                map([
                    ("selector", selector()),
                    ("ports", Value::Sequence(service_ports)),
                ]),
            ),
        ])),
        Kind::Function => documents.push(autoscaler(process, &dns)),
        Kind::Sink => {}
    }
    Ok(documents)
}

/// The autoscaler of a function: one replica per 500 jobs waiting in its JetStream consumer
/// (the figure every replica reports as orbit_jobs_pending; prometheus-adapter.yaml serves it
/// as an external metric), as KEDA scales on a consumer's lag.
fn autoscaler(process: &Process, dns: &str) -> Value {
    let function = process
        .env
        .get("ORBIT_FUNCTION_NAME")
        .map_or(process.name.as_str(), String::as_str);
    let metric = map([
        ("name", "orbit_jobs_pending".into()),
        (
            "selector",
            map([("matchLabels", map([("function", function.into())]))]),
        ),
    ]);
    let target = map([
        ("type", "AverageValue".into()),
        ("averageValue", "500".into()),
    ]);
    map([
        ("apiVersion", "autoscaling/v2".into()),
        ("kind", "HorizontalPodAutoscaler".into()),
        ("metadata", metadata(dns, &process.name)),
        (
            "spec",
            map([
                (
                    "scaleTargetRef",
                    map([
                        ("apiVersion", "apps/v1".into()),
                        ("kind", "Deployment".into()),
                        ("name", dns.into()),
                    ]),
                ),
                ("minReplicas", process.replicas.into()),
                ("maxReplicas", 20.into()),
                (
                    "metrics",
                    Value::Sequence(vec![map([
                        ("type", "External".into()),
                        ("external", map([("metric", metric), ("target", target)])),
                    ])]),
                ),
                (
                    "behavior",
                    map([(
                        "scaleDown",
                        map([("stabilizationWindowSeconds", 300.into())]),
                    )]),
                ),
            ]),
        ),
    ])
}

/// The Job that applies the migrations as the owner, with the migrating process's image.
fn migrate_job(migrator: &Process, stack: &Stack) -> Result<Value, DeployError> {
    let (writers, readers) = credentials::granted_roles(&stack.manifest);
    let owner_url = format!("postgres://{PG_OWNER}:$(ORBIT_PG_PASSWORD)@postgres:5432/orbit");
    let env = vec![
        from_key("ORBIT_PG_PASSWORD"),
        value("ORBIT_DATABASE_URL", &owner_url),
        value("ORBIT_PG_WRITER_ROLES", &writers),
        value("ORBIT_PG_READER_ROLES", &readers),
    ];
    let container = map([
        ("name", "migrate".into()),
        ("image", proc::k8s_image(migrator)?.into()),
        ("args", strings(&["migrate"])),
        ("env", Value::Sequence(env)),
        (
            "securityContext",
            map([
                ("runAsNonRoot", true.into()),
                ("runAsUser", NONROOT.into()),
                ("readOnlyRootFilesystem", true.into()),
                ("allowPrivilegeEscalation", false.into()),
                ("capabilities", map([("drop", strings(&["ALL"]))])),
            ]),
        ),
    ]);
    let template = map([
        ("metadata", map([("labels", labels("migrate"))])),
        (
            "spec",
            map([
                ("restartPolicy", "OnFailure".into()),
                ("containers", Value::Sequence(vec![container])),
            ]),
        ),
    ]);
    Ok(map([
        ("apiVersion", "batch/v1".into()),
        ("kind", "Job".into()),
        ("metadata", metadata("orbit-migrate", "migrate")),
        (
            "spec",
            map([("backoffLimit", 10.into()), ("template", template)]),
        ),
    ]))
}

/// prometheus-adapter's external-metrics rule: a function's backlog (every replica reports
/// the same consumer-wide figure, hence max) for the HorizontalPodAutoscalers.
fn adapter() -> Result<Value, DeployError> {
    let rules = map([(
        "externalRules",
        Value::Sequence(vec![map([
            ("seriesQuery", "orbit_jobs_pending{function!=\"\"}".into()),
            ("resources", map([("namespaced", false.into())])),
            ("name", map([("as", "orbit_jobs_pending".into())])),
            (
                "metricsQuery",
                "max by (function) (<<.Series>>{<<.LabelMatchers>>})".into(),
            ),
        ])]),
    )]);
    Ok(map([
        ("apiVersion", "v1".into()),
        ("kind", "ConfigMap".into()),
        ("metadata", metadata("prometheus-adapter-orbit", "orbit")),
        (
            "data",
            map([("config.yaml", yaml::document(&rules)?.into())]),
        ),
    ]))
}

/// Every file of `deploy/k8s/`, as (file name, text).
pub fn files(stack: &Stack) -> Result<Vec<(String, String)>, DeployError> {
    let header = format!(
        "{HEADER}# Orbit's own workloads on Kubernetes (docs/deploy.md): NATS, Postgres, Redis, Kafka and\n\
         # Elasticsearch come from their own operators or charts.\n"
    );
    let text = |documents: &[Value]| -> Result<String, DeployError> {
        Ok(format!("{header}{}", yaml::documents(documents)?))
    };
    let mut files: Vec<(String, String)> = Vec::new();
    let mut add = |name: String, text: String| -> Result<(), DeployError> {
        if files.iter().any(|(n, _)| *n == name) || name == ADAPTER || name == KUSTOMIZATION {
            return Err(DeployError::Stack(format!(
                "two sets of Kubernetes manifests would be deploy/k8s/{name}: rename a process"
            )));
        }
        files.push((name, text));
        Ok(())
    };
    let config = map([
        ("apiVersion", "v1".into()),
        ("kind", "ConfigMap".into()),
        ("metadata", metadata("orbit-config", "orbit")),
        (
            "data",
            Value::Mapping(
                CONFIG
                    .iter()
                    .map(|(k, v)| (Value::from(*k), Value::from(*v)))
                    .collect(),
            ),
        ),
    ]);
    add("config.yaml".into(), text(&[config])?)?;
    if let Some(migrator) = stack.manifest.migrator() {
        add(
            "migrate.yaml".into(),
            text(&[migrate_job(migrator, stack)?])?,
        )?;
    }
    for process in &stack.manifest.processes {
        add(
            format!("{}.yaml", dns(&process.name)),
            text(&workload(process, stack)?)?,
        )?;
    }
    let mut resources: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    resources.sort_unstable();
    let kustomization = map([
        ("apiVersion", "kustomize.config.k8s.io/v1beta1".into()),
        ("kind", "Kustomization".into()),
        // The Secret orbit-secrets is not here: it is made from .env (docs/deploy.md),
        // `kubectl create secret generic orbit-secrets --from-env-file=.env`.
        ("resources", strings(&resources)),
    ]);
    let kustomization = text(&[kustomization])?;
    files.push((ADAPTER.into(), text(&[adapter()?])?));
    files.push((KUSTOMIZATION.into(), kustomization));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Scratch;
    use super::*;

    #[test]
    fn each_process_has_a_deployment_and_functions_scale_on_their_backlog() {
        let scratch = Scratch::stack("k8s");
        let stack = Stack::load(scratch.path()).expect("stack");
        let files = files(&stack).expect("files");
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"moving-average.yaml"), "{names:?}");
        assert_eq!(names.last(), Some(&KUSTOMIZATION));
        let (_, text) = files
            .iter()
            .find(|(n, _)| n == "moving-average.yaml")
            .expect("ma");
        let documents: Vec<Value> = serde_yaml::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).expect("document"))
            .collect();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0]["kind"], "Deployment");
        assert_eq!(documents[0]["spec"]["replicas"], 2);
        assert_eq!(documents[1]["kind"], "HorizontalPodAutoscaler");
        assert_eq!(documents[1]["spec"]["minReplicas"], 2);
        let env = documents[0]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .expect("env");
        // The ConfigMap's settings come from it alone; the password from the Secret.
        let named = |n: &str| env.iter().filter(|e| e["name"] == n).collect::<Vec<_>>();
        assert_eq!(named("ORBIT_NATS_URL").len(), 1);
        assert_eq!(
            named("ORBIT_NATS_URL")[0]["valueFrom"]["configMapKeyRef"]["name"],
            "orbit-config"
        );
        assert_eq!(
            named("ORBIT_NATS_PASSWORD_MOVING_AVERAGE")[0]["valueFrom"]["secretKeyRef"]["name"],
            "orbit-secrets"
        );
        assert_eq!(
            named("ORBIT_NATS_PASSWORD")[0]["value"],
            "$(ORBIT_NATS_PASSWORD_MOVING_AVERAGE)"
        );
        let (_, kustomization) = files.iter().find(|(n, _)| n == KUSTOMIZATION).expect("k");
        assert!(!kustomization.contains(ADAPTER));
        assert!(kustomization.contains("- migrate.yaml"));
    }
}
