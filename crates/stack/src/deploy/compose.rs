//! `compose.yaml`: the infrastructure (NATS, one server or a cluster of three; Postgres,
//! Redis, Kafka, Elasticsearch; Prometheus and Grafana), the migrations, and one service per
//! process of the manifest (plus a GPU variant of each process that can use one).

use serde::Serialize;

use crate::credentials;
use crate::manifest::{Kind, Process};

use super::process::{self as proc, required, variable, Probe, Target, PG_OWNER};
use super::yaml::{self, Ordered};
use super::{DeployError, Stack, HEADER};

/// Infrastructure images, pinned by version tag. The versions Orbit is tested with locally are
/// NATS 2.15 and PostgreSQL 15+; the others speak the protocols Orbit uses (docs/deploy.md).
const NATS_IMAGE: &str = "nats:2.15.1-alpine";
const POSTGRES_IMAGE: &str = "postgres:17.6-bookworm";
const REDIS_IMAGE: &str = "redis:7.4.2-bookworm";
const KAFKA_IMAGE: &str = "apache/kafka:3.9.1";
const ELASTICSEARCH_IMAGE: &str = "docker.elastic.co/elasticsearch/elasticsearch:8.17.0";
const PROMETHEUS_IMAGE: &str = "prom/prometheus:v3.1.0";
const GRAFANA_IMAGE: &str = "grafana/grafana:11.4.0";
/// Jaeger all-in-one: takes OTLP/HTTP on 4318, shows traces on 16686.
const JAEGER_IMAGE: &str = "jaegertracing/jaeger:2.10.0";

/// The named volumes of the infrastructure.
const VOLUMES: [&str; 8] = [
    "nats-1",
    "nats-2",
    "nats-3",
    "postgres",
    "kafka",
    "elasticsearch",
    "prometheus",
    "grafana",
];

/// The service that applies the migrations before anything uses the database.
pub const MIGRATE: &str = "migrate";

/// The whole Compose file.
#[derive(Debug, Clone, Serialize)]
pub struct ComposeFile {
    name: &'static str,
    services: Ordered<Service>,
    volumes: Ordered<serde_yaml::Mapping>,
    secrets: Ordered<SecretSource>,
}

impl ComposeFile {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    #[cfg(test)]
    pub fn services(&self) -> impl Iterator<Item = (&String, &Service)> {
        self.services.iter()
    }
}

#[derive(Debug, Clone, Serialize)]
struct SecretSource {
    environment: &'static str,
}

/// One service; what it leaves empty is not written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Service {
    image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    profiles: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<Build>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entrypoint: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    pub environment: Ordered<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    secrets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(skip_serializing_if = "Ordered::is_empty")]
    depends_on: Ordered<Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    restart: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tmpfs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    security_opt: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_grace_period: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<Deploy>,
}

#[derive(Debug, Clone, Serialize)]
struct Build {
    context: &'static str,
    target: &'static str,
    args: Ordered<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Dependency {
    condition: &'static str,
}

#[derive(Debug, Clone, Serialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: &'static str,
    timeout: &'static str,
    retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_period: Option<&'static str>,
}

impl Healthcheck {
    fn new(test: &[&str], interval: &'static str, timeout: &'static str, retries: u32) -> Self {
        Self {
            test: owned(test),
            interval,
            timeout,
            retries,
            start_period: None,
        }
    }

    fn start_period(self, period: &'static str) -> Self {
        Self {
            start_period: Some(period),
            ..self
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Deploy {
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<u32>,
    resources: Resources,
}

#[derive(Debug, Clone, Serialize)]
struct Resources {
    limits: Limits,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservations: Option<Reservations>,
}

#[derive(Debug, Clone, Serialize)]
struct Limits {
    cpus: String,
    memory: String,
}

#[derive(Debug, Clone, Serialize)]
struct Reservations {
    devices: Vec<Device>,
}

#[derive(Debug, Clone, Serialize)]
struct Device {
    driver: &'static str,
    count: u32,
    capabilities: Vec<String>,
}

fn owned(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `deploy.resources.limits` of `cpus` and `memory`.
fn limited(cpus: u32, mebibytes: u32) -> Option<Deploy> {
    Some(Deploy {
        replicas: None,
        resources: Resources {
            limits: Limits {
                cpus: cpus.to_string(),
                memory: proc::memory(mebibytes),
            },
            reservations: None,
        },
    })
}

/// `port` published on ORBIT_BIND.
fn published(port: u16) -> String {
    format!("${{ORBIT_BIND:-127.0.0.1}}:{port}:{port}")
}

/// Waits for `services` to be healthy (and `migrate` to have finished, when asked).
fn depends(services: &[&str], migrate: bool) -> Ordered<Dependency> {
    let mut out: Ordered<Dependency> = services
        .iter()
        .map(|s| {
            (
                *s,
                Dependency {
                    condition: "service_healthy",
                },
            )
        })
        .collect();
    if migrate {
        out.insert(
            MIGRATE,
            Dependency {
                condition: "service_completed_successfully",
            },
        );
    }
    out
}

/// Each `name` as `NAME: ${NAME:?see .env.example}`.
fn required_all(names: impl IntoIterator<Item = String>) -> Ordered<String> {
    names
        .into_iter()
        .map(|name| {
            let value = required(&name);
            (name, value)
        })
        .collect()
}

fn infra_services(stack: &Stack) -> Ordered<Service> {
    let mut users: Vec<&str> = stack.users.iter().map(|u| u.name.as_str()).collect();
    users.sort_unstable();
    let nats_env = required_all(
        users
            .into_iter()
            .map(|u| variable("ORBIT_NATS_PASSWORD", u)),
    );
    let nats_health = Healthcheck::new(
        &[
            "CMD",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "http://127.0.0.1:8222/healthz?js-enabled-only=true",
        ],
        "5s",
        "3s",
        20,
    )
    .start_period("10s");
    let nats_server = |index: u32| {
        // `single` (default) or `cluster`: the same three-server cluster as
        // nats/cluster.conf, this server being orbit-1 (ORBIT_NATS_MODE=cluster with
        // COMPOSE_PROFILES=cluster). The JetStream store is given on the command line, as the
        // local stack's is.
        let config = if index == 1 {
            "/etc/nats/${ORBIT_NATS_MODE:-single}.conf"
        } else {
            "/etc/nats/cluster.conf"
        };
        let mut environment = Ordered::default();
        environment.insert("NATS_SERVER_NAME", format!("orbit-{index}"));
        environment.extend(nats_env.clone());
        Service {
            image: NATS_IMAGE.into(),
            profiles: if index == 1 {
                Vec::new()
            } else {
                owned(&["cluster"])
            },
            command: owned(&["-c", config, "--store_dir", "/data"]),
            environment,
            volumes: vec![
                "./deploy/nats:/etc/nats:ro".into(),
                format!("nats-{index}:/data"),
            ],
            ports: if index == 1 {
                vec![published(4222), published(8222)]
            } else {
                Vec::new()
            },
            healthcheck: Some(nats_health.clone()),
            restart: "unless-stopped",
            deploy: limited(2, 1024),
            ..Service::default()
        }
    };

    let mut roles: Vec<&str> = stack
        .manifest
        .processes
        .iter()
        .filter_map(|p| p.postgres.as_ref().map(|r| r.role.as_str()))
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let mut redis_users: Vec<&str> = stack
        .manifest
        .processes
        .iter()
        .filter_map(|p| p.redis_user.as_deref())
        .collect();
    redis_users.sort_unstable();
    redis_users.dedup();

    let mut postgres_env: Ordered<String> = [
        ("POSTGRES_USER", PG_OWNER.to_string()),
        ("POSTGRES_DB", "orbit".to_string()),
        ("POSTGRES_PASSWORD", required("ORBIT_PG_PASSWORD")),
    ]
    .into_iter()
    .collect();
    postgres_env.extend(required_all(
        roles.iter().map(|r| variable("ORBIT_PG_PASSWORD", r)),
    ));
    let mut redis_env = Ordered::default();
    redis_env.insert("ORBIT_REDIS_PASSWORD", required("ORBIT_REDIS_PASSWORD"));
    redis_env.extend(required_all(
        redis_users
            .iter()
            .map(|u| variable("ORBIT_REDIS_PASSWORD", u)),
    ));

    let mut services = Ordered::default();
    services.insert("nats", nats_server(1));
    services.insert("nats-2", nats_server(2));
    services.insert("nats-3", nats_server(3));
    services.insert(
        "postgres",
        Service {
            image: POSTGRES_IMAGE.into(),
            // The same settings as the local stack's (scripts/infra.sh): fewer full-page
            // images in the WAL under a steady stream of multi-row inserts; durability left
            // default.
            command: owned(&[
                "postgres",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=256MB",
                "-c",
                "max_wal_size=4GB",
                "-c",
                "checkpoint_timeout=15min",
            ]),
            environment: postgres_env,
            volumes: owned(&[
                "./deploy/postgres/roles.sh:/docker-entrypoint-initdb.d/10-roles.sh:ro",
                "postgres:/var/lib/postgresql/data",
            ]),
            ports: vec![published(5432)],
            healthcheck: Some(
                Healthcheck::new(
                    &["CMD", "pg_isready", "-U", PG_OWNER, "-d", "orbit"],
                    "5s",
                    "3s",
                    20,
                )
                .start_period("20s"),
            ),
            restart: "unless-stopped",
            deploy: limited(2, 2048),
            ..Service::default()
        },
    );
    services.insert(
        "redis",
        Service {
            image: REDIS_IMAGE.into(),
            entrypoint: owned(&["/bin/sh", "/etc/orbit/start.sh"]),
            environment: redis_env,
            volumes: owned(&["./deploy/redis:/etc/orbit:ro"]),
            ports: vec![published(6379)],
            healthcheck: Some(Healthcheck::new(
                &[
                    "CMD-SHELL",
                    "REDISCLI_AUTH=\"$$ORBIT_REDIS_PASSWORD\" redis-cli ping | grep -q PONG",
                ],
                "5s",
                "3s",
                20,
            )),
            restart: "unless-stopped",
            deploy: limited(1, 1280),
            ..Service::default()
        },
    );
    services.insert(
        "kafka",
        Service {
            image: KAFKA_IMAGE.into(),
            // KRaft, one node that is broker and controller. Containers reach it as
            // kafka:29092, the host as 127.0.0.1:9092 (ORBIT_KAFKA_ADVERTISED_HOST otherwise).
            environment: [
                ("KAFKA_NODE_ID", "1"),
                ("KAFKA_PROCESS_ROLES", "broker,controller"),
                (
                    "KAFKA_LISTENERS",
                    "INTERNAL://:29092,EXTERNAL://:9092,CONTROLLER://:9093",
                ),
                (
                    "KAFKA_ADVERTISED_LISTENERS",
                    "INTERNAL://kafka:29092,EXTERNAL://${ORBIT_KAFKA_ADVERTISED_HOST:-127.0.0.1}:9092",
                ),
                (
                    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                    "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                ),
                ("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL"),
                ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
                ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@kafka:9093"),
                ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
                ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
                ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
                ("KAFKA_LOG_DIRS", "/var/lib/kafka/data"),
            ]
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect(),
            volumes: owned(&["kafka:/var/lib/kafka/data"]),
            ports: vec![published(9092)],
            healthcheck: Some(
                Healthcheck::new(
                    &[
                        "CMD",
                        "/opt/kafka/bin/kafka-broker-api-versions.sh",
                        "--bootstrap-server",
                        "127.0.0.1:29092",
                    ],
                    "10s",
                    "10s",
                    20,
                )
                .start_period("30s"),
            ),
            restart: "unless-stopped",
            deploy: limited(2, 2048),
            ..Service::default()
        },
    );
    services.insert(
        "elasticsearch",
        Service {
            image: ELASTICSEARCH_IMAGE.into(),
            environment: [
                ("discovery.type", "single-node".to_string()),
                ("xpack.security.enabled", "true".to_string()),
                ("xpack.security.http.ssl.enabled", "false".to_string()),
                ("ELASTIC_PASSWORD", required("ORBIT_ELASTICSEARCH_PASSWORD")),
                ("ES_JAVA_OPTS", "-Xms1g -Xmx1g".to_string()),
            ]
            .into_iter()
            .collect(),
            volumes: owned(&["elasticsearch:/usr/share/elasticsearch/data"]),
            ports: vec![published(9200)],
            healthcheck: Some(
                Healthcheck::new(
                    &[
                        "CMD-SHELL",
                        "curl -fsu \"elastic:$$ELASTIC_PASSWORD\" \
                         'http://127.0.0.1:9200/_cluster/health?wait_for_status=yellow&timeout=5s'",
                    ],
                    "10s",
                    "10s",
                    30,
                )
                .start_period("60s"),
            ),
            restart: "unless-stopped",
            deploy: limited(2, 2048),
            ..Service::default()
        },
    );
    services.insert(
        "prometheus",
        Service {
            image: PROMETHEUS_IMAGE.into(),
            profiles: owned(&["observability"]),
            command: owned(&[
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=15d",
            ]),
            volumes: owned(&[
                "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                "./observability/prometheus/rules.yml:/etc/prometheus/rules.yml:ro",
                "prometheus:/prometheus",
            ]),
            secrets: owned(&["orbit_admin_key"]),
            ports: vec![published(9090)],
            healthcheck: Some(Healthcheck::new(
                &[
                    "CMD",
                    "wget",
                    "-q",
                    "-O",
                    "/dev/null",
                    "http://127.0.0.1:9090/-/ready",
                ],
                "10s",
                "5s",
                10,
            )),
            restart: "unless-stopped",
            deploy: limited(1, 1024),
            ..Service::default()
        },
    );
    services.insert(
        "grafana",
        Service {
            image: GRAFANA_IMAGE.into(),
            profiles: owned(&["observability"]),
            environment: [
                (
                    "GF_SECURITY_ADMIN_PASSWORD",
                    required("ORBIT_GRAFANA_PASSWORD"),
                ),
                ("GF_USERS_ALLOW_SIGN_UP", "false".to_string()),
            ]
            .into_iter()
            .collect(),
            volumes: owned(&[
                "./observability/grafana/provisioning:/etc/grafana/provisioning:ro",
                "./observability/grafana/dashboards:/var/lib/grafana/dashboards:ro",
                "grafana:/var/lib/grafana",
            ]),
            ports: vec![published(3000)],
            depends_on: depends(&["prometheus"], false),
            healthcheck: Some(Healthcheck::new(
                &[
                    "CMD",
                    "wget",
                    "-q",
                    "-O",
                    "/dev/null",
                    "http://127.0.0.1:3000/api/health",
                ],
                "10s",
                "5s",
                10,
            )),
            restart: "unless-stopped",
            deploy: limited(1, 512),
            ..Service::default()
        },
    );
    // Traces: the processes export to it when ORBIT_OTLP_ENDPOINT=http://jaeger:4318.
    services.insert(
        "jaeger",
        Service {
            image: JAEGER_IMAGE.into(),
            profiles: owned(&["observability"]),
            ports: vec![published(16686), published(4318)],
            restart: "unless-stopped",
            deploy: limited(1, 1024),
            ..Service::default()
        },
    );
    services
}

/// The service that applies the migrations as the owner and grants the writers insert and
/// the readers read, with the image of the process that has `migrations = true`.
fn migrate_service(migrator: &Process, stack: &Stack) -> Result<Service, DeployError> {
    let (writers, readers) = credentials::granted_roles(&stack.manifest);
    Ok(Service {
        image: proc::compose_image(migrator)?,
        build: Some(Build {
            context: ".",
            target: "process",
            args: [("BIN", proc::binary(migrator)?.to_string())]
                .into_iter()
                .collect(),
        }),
        command: owned(&["migrate"]),
        environment: [
            (
                "ORBIT_DATABASE_URL",
                format!(
                    "postgres://{PG_OWNER}:{}@postgres:5432/orbit",
                    required("ORBIT_PG_PASSWORD")
                ),
            ),
            ("ORBIT_PG_WRITER_ROLES", writers),
            ("ORBIT_PG_READER_ROLES", readers),
            ("ORBIT_LOG_FORMAT", "json".to_string()),
        ]
        .into_iter()
        .collect(),
        depends_on: depends(&["postgres"], false),
        restart: "on-failure",
        read_only: true,
        cap_drop: owned(&["ALL"]),
        security_opt: owned(&["no-new-privileges:true"]),
        ..Service::default()
    })
}

/// The service of one process; with `gpu`, its variant on an NVIDIA GPU (profile `gpu`).
fn orbit_service(process: &Process, stack: &Stack, gpu: bool) -> Result<Service, DeployError> {
    let target = proc::image_target(process);
    let mut args = proc::build_args(process)?;
    if process.models {
        args.insert("ONNX_DEVICE", if gpu { "cuda" } else { "cpu" }.to_string());
    }
    let mut needs = vec!["nats"];
    if process.postgres.is_some() {
        needs.push("postgres");
    }
    if process.redis_user.is_some() {
        needs.push("redis");
    }
    if process.kind == Kind::Bridge {
        needs.push("kafka");
    }
    if proc::uses_elasticsearch(process) {
        needs.push("elasticsearch");
    }
    let mut environment = proc::environment(process, &stack.users, Target::Compose)?;
    if gpu {
        environment.insert("ORBIT_ONNX_DEVICE", "cuda".to_string());
    }
    let (cpus, memory) = proc::limits(process);
    let mut deploy = limited(cpus, memory);
    if let Some(deploy) = deploy.as_mut() {
        if process.kind == Kind::Function {
            deploy.replicas = Some(if gpu { 1 } else { process.replicas });
        }
        if gpu {
            deploy.resources.reservations = Some(Reservations {
                devices: vec![Device {
                    driver: "nvidia",
                    count: 1,
                    capabilities: owned(&["gpu"]),
                }],
            });
        }
    }
    let image = proc::compose_image(process)?;
    Ok(Service {
        image: if gpu { format!("{image}-cuda") } else { image },
        profiles: if gpu { owned(&["gpu"]) } else { Vec::new() },
        build: Some(Build {
            context: ".",
            target,
            args,
        }),
        command: proc::command(process)
            .map(<[String]>::to_vec)
            .unwrap_or_default(),
        environment,
        ports: proc::served_ports(process)
            .into_iter()
            .map(|(_, port)| published(port))
            .collect(),
        depends_on: depends(&needs, process.postgres.is_some()),
        healthcheck: Some(
            Healthcheck::new(
                &[
                    "CMD",
                    "/usr/local/bin/orbit-probe",
                    &proc::health_url(process, Probe::Ready)?,
                ],
                "5s",
                "3s",
                12,
            )
            .start_period("10s"),
        ),
        restart: "unless-stopped",
        // Nothing in an Orbit image is written at run time; stop lets a process drain
        // (finish what it pulled, flush its writes) before SIGKILL.
        read_only: true,
        tmpfs: owned(&["/tmp"]),
        cap_drop: owned(&["ALL"]),
        security_opt: owned(&["no-new-privileges:true"]),
        stop_grace_period: Some("30s"),
        deploy,
        ..Service::default()
    })
}

/// The name of a process's GPU variant.
pub fn gpu_variant(process: &Process) -> String {
    format!("{}-gpu", process.name)
}

/// The Compose file of `stack`.
pub fn compose(stack: &Stack) -> Result<ComposeFile, DeployError> {
    let mut services = infra_services(stack);
    let migrator = stack.manifest.migrator();
    match migrator {
        Some(migrator) => services.insert(MIGRATE, migrate_service(migrator, stack)?),
        None => {
            if let Some(process) = stack
                .manifest
                .processes
                .iter()
                .find(|p| p.postgres.is_some())
            {
                return Err(DeployError::Stack(format!(
                    "process {} has a Postgres role, but no process has `migrations = true` to make its tables",
                    process.name
                )));
            }
        }
    }
    for process in &stack.manifest.processes {
        let mut names = vec![(process.name.clone(), false)];
        if process.gpu {
            names.push((gpu_variant(process), true));
        }
        for (name, gpu) in names {
            if services.get(&name).is_some() {
                return Err(DeployError::Stack(format!(
                    "process {}: compose.yaml already has a service {name}",
                    process.name
                )));
            }
            services.insert(name, orbit_service(process, stack, gpu)?);
        }
    }
    Ok(ComposeFile {
        name: "orbit",
        services,
        volumes: VOLUMES
            .iter()
            .map(|name| (*name, serde_yaml::Mapping::new()))
            .collect(),
        secrets: [(
            "orbit_admin_key",
            SecretSource {
                environment: "ORBIT_ADMIN_KEY",
            },
        )]
        .into_iter()
        .collect(),
    })
}

/// `compose.yaml`'s text.
pub fn text(stack: &Stack, compose: &ComposeFile) -> Result<String, DeployError> {
    let scaled = stack
        .manifest
        .of_kind(Kind::Function)
        .next()
        .map_or("SERVICE", |p| p.name.as_str());
    Ok(format!(
        "{HEADER}#\n\
         # Orbit on Docker Compose (docs/deploy.md):\n\
         #   orbit deploy env                       # .env with fresh secrets (or copy .env.example)\n\
         #   docker compose up -d                   # NATS, Postgres, Redis, Kafka, Elasticsearch, Orbit\n\
         #   docker compose up -d --scale {scaled}=3\n\
         # Profiles: observability (Prometheus, Grafana, Jaeger), cluster (three NATS servers; also set\n\
         # ORBIT_NATS_MODE=cluster, ORBIT_STREAM_REPLICAS=3 and ORBIT_NATS_URL in .env), gpu (the model\n\
         # host on an NVIDIA GPU). Every port is published on ORBIT_BIND (default 127.0.0.1).\n{}",
        yaml::document(compose)?
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::Scratch;
    use super::*;

    fn load(label: &str) -> (Scratch, Stack) {
        let scratch = Scratch::stack(label);
        let stack = Stack::load(scratch.path()).expect("stack");
        (scratch, stack)
    }

    #[test]
    fn every_process_is_a_service_and_the_migrations_run_first() {
        let (_scratch, stack) = load("services");
        let compose = compose(&stack).expect("compose");
        for process in &stack.manifest.processes {
            assert!(compose.service(&process.name).is_some(), "{}", process.name);
        }
        let migrate = compose.service(MIGRATE).expect("migrate");
        assert_eq!(migrate.command, ["migrate"]);
        assert_eq!(
            migrate
                .environment
                .get("ORBIT_PG_WRITER_ROLES")
                .map(String::as_str),
            Some("orbit_sink")
        );
        assert_eq!(
            migrate
                .environment
                .get("ORBIT_PG_READER_ROLES")
                .map(String::as_str),
            Some("orbit_gateway")
        );
        let sink = compose.service("sink-postgres").expect("sink");
        assert_eq!(
            sink.environment.get("ORBIT_MIGRATE").map(String::as_str),
            Some("off")
        );
        assert_eq!(
            sink.depends_on.get(MIGRATE).map(|d| d.condition),
            Some("service_completed_successfully")
        );
        let gateway = compose.service("gateway").expect("gateway");
        assert!(gateway.depends_on.get("redis").is_some());
        assert_eq!(
            gateway.ports,
            [
                "${ORBIT_BIND:-127.0.0.1}:8000:8000",
                "${ORBIT_BIND:-127.0.0.1}:8001:8001"
            ]
        );
        let bridge = compose.service("bridge-kafka").expect("bridge");
        assert!(bridge.depends_on.get("kafka").is_some());
        let infra = [
            "nats",
            "nats-2",
            "nats-3",
            "postgres",
            "redis",
            "kafka",
            "elasticsearch",
            "prometheus",
            "grafana",
            "jaeger",
        ];
        assert_eq!(
            compose.services().count(),
            infra.len() + 1 + stack.manifest.processes.len() + 1
        );
    }

    #[test]
    fn the_gpu_process_has_a_gpu_variant() {
        let (_scratch, stack) = load("gpu");
        let compose = compose(&stack).expect("compose");
        let cpu = compose.service("onnx-host").expect("onnx-host");
        let gpu = compose.service("onnx-host-gpu").expect("onnx-host-gpu");
        assert!(compose.service("moving_average-gpu").is_none());
        assert_eq!(gpu.profiles, ["gpu"]);
        assert_eq!(gpu.image, format!("{}-cuda", cpu.image));
        assert_eq!(
            gpu.environment.get("ORBIT_ONNX_DEVICE").map(String::as_str),
            Some("cuda")
        );
        assert_eq!(
            cpu.environment.get("ORBIT_ONNX_DEVICE").map(String::as_str),
            Some("${ORBIT_ONNX_DEVICE:-cpu}")
        );
        let build = gpu.build.as_ref().expect("build");
        assert_eq!(build.target, "models");
        assert_eq!(
            build.args.get("ONNX_DEVICE").map(String::as_str),
            Some("cuda")
        );
        assert!(gpu
            .deploy
            .as_ref()
            .and_then(|d| d.resources.reservations.as_ref())
            .is_some());
    }

    #[test]
    fn a_process_runs_as_its_own_nats_user_or_the_shared_one() {
        let (_scratch, stack) = load("users");
        let compose = compose(&stack).expect("compose");
        let user = |service: &str| {
            let env = &compose.service(service).expect("service").environment;
            (
                env.get("ORBIT_NATS_USER").cloned(),
                env.get("ORBIT_NATS_PASSWORD").cloned(),
            )
        };
        assert_eq!(
            user("moving_average"),
            (
                Some("moving_average".into()),
                Some("${ORBIT_NATS_PASSWORD_MOVING_AVERAGE:?see .env.example}".into())
            )
        );
        assert_eq!(user("sink-postgres").0.as_deref(), Some("sink-postgres"));
        // sink-other has no user of its own in the permissions.
        assert_eq!(
            user("sink-other"),
            (
                Some("functions".into()),
                Some("${ORBIT_NATS_PASSWORD_FUNCTIONS:?see .env.example}".into())
            )
        );
        let nats = &compose.service("nats").expect("nats").environment;
        assert!(nats.get("ORBIT_NATS_PASSWORD_FUNCTIONS").is_some());
        assert!(nats.get("ORBIT_NATS_PASSWORD_ONNX_HOST").is_some());
    }

    #[test]
    fn the_text_parses_back_to_the_document() {
        let (_scratch, stack) = load("text");
        let compose = compose(&stack).expect("compose");
        let text = text(&stack, &compose).expect("text");
        assert!(text.starts_with(HEADER));
        assert!(text.contains("--scale moving_average=3"));
        let back: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse");
        assert_eq!(back, serde_yaml::to_value(&compose).expect("value"));
        assert!(text.contains("ORBIT_AUTH: 'on'\n"), "{text}");
    }
}
