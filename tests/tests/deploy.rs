//! The deployment files: `compose.yaml`, the Dockerfile and the Kubernetes manifests are what
//! `orbit deploy generate` writes from `stack.toml`, and valid (the Compose specification's
//! schema, hadolint, the Kubernetes schemas); and an image built from the repository's
//! Dockerfile, run with the environment compose.yaml gives its service, serves a function
//! through compose.yaml's NATS server configuration.
//!
//! No registry is reachable here, so the image is built with buildah (no container engine
//! needed) from the Dockerfile's own `process` stage, with its two base images given locally:
//! `RUNTIME_IMAGE` an image made from scratch holding the shared libraries the binaries link
//! (this machine is Debian 12, the release of the production base image), and `BINARIES` one
//! holding the binaries `just test` built, in the `/out` layout the Dockerfile's build stage
//! makes. Everything after those two base images is the production Dockerfile as written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use orbit_e2e::{binary, free_port, wait_until, workspace_root, Proc, TestEnv};
use serde_json::{json, Value};

/// Runs `command` and returns its standard output; a failure carries both outputs.
fn stdout_of(mut command: Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `orbit deploy args` and returns its standard output.
fn orbit_deploy(args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new(binary("orbit"));
    command
        .current_dir(workspace_root())
        .arg("deploy")
        .args(args);
    stdout_of(command, &format!("orbit deploy {args:?}"))
}

#[test]
fn the_deployment_files_are_current_valid_and_documented() -> anyhow::Result<()> {
    orbit_deploy(&["check"])?;
    Ok(())
}

/// buildah with a storage of its own under `target/`, so the test neither reads nor leaves
/// anything in the machine's container storage.
struct Buildah {
    root: PathBuf,
}

impl Buildah {
    fn new() -> anyhow::Result<Self> {
        let root = workspace_root().join("target/e2e-buildah");
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// The arguments that point buildah at this storage, before its subcommand.
    fn storage_args(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.root.join("storage").display().to_string(),
            "--runroot".into(),
            self.root.join("run").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
        ]
    }

    fn command(&self) -> Command {
        let mut command = Command::new("buildah");
        command
            .args(self.storage_args())
            .current_dir(workspace_root());
        command
    }

    /// Runs `buildah args` (scripts/install-deploy-tools.sh installs it) and returns its
    /// standard output, trimmed.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command();
        command.args(args);
        Ok(stdout_of(command, &format!("buildah {args:?}"))?
            .trim()
            .to_string())
    }

    /// Commits an image from scratch holding `files` (source on this machine, path inside).
    fn image_from(&self, name: &str, files: &[(PathBuf, String)]) -> anyhow::Result<()> {
        let container = self.run(&["from", "scratch"])?;
        for (source, inside) in files {
            self.run(&["copy", &container, &source.display().to_string(), inside])?;
        }
        self.run(&["commit", "--quiet", &container, name])?;
        self.run(&["rm", &container])?;
        Ok(())
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "--all"]).output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The shared libraries `binaries` load, and the dynamic loader, as `ldd` lists them.
fn linked_libraries(binaries: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd").args(binaries).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut libraries: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            match line.split_once(" => ") {
                Some((_, rest)) => rest.split_whitespace().next().map(PathBuf::from),
                // `/lib64/ld-linux-x86-64.so.2 (0x...)`; not the `/path/binary:` headers.
                None if line.starts_with('/') && !line.ends_with(':') => {
                    line.split_whitespace().next().map(PathBuf::from)
                }
                None => None,
            }
        })
        .filter(|path| path.is_absolute())
        .collect();
    libraries.sort();
    libraries.dedup();
    if libraries.is_empty() {
        bail!("ldd listed no libraries for {binaries:?}:\n{text}");
    }
    Ok(libraries)
}

/// `/out/<bin>/` for each of `bins`, as the Dockerfile's build stage lays it out: the binary,
/// orbit-probe, and `orbit-process` linking to the binary.
fn out_layout(dir: &Path, bins: &[&str]) -> anyhow::Result<PathBuf> {
    let out = dir.join("out");
    for bin in bins {
        let folder = out.join(bin);
        std::fs::create_dir_all(&folder)?;
        std::fs::copy(binary(bin), folder.join(bin))?;
        std::fs::copy(binary("orbit-probe"), folder.join("orbit-probe"))?;
        std::os::unix::fs::symlink(bin, folder.join("orbit-process"))?;
    }
    Ok(out)
}

/// `/ort/` as the Dockerfile's `ort-cpu` stage lays it out, from the library `just test`
/// installed (the same wheel).
fn ort_layout(dir: &Path, library: &Path) -> anyhow::Result<PathBuf> {
    let ort = dir.join("ort");
    std::fs::create_dir_all(&ort)?;
    let name = library
        .file_name()
        .context("the ONNX Runtime library has no file name")?;
    std::fs::copy(library, ort.join(name))?;
    std::os::unix::fs::symlink(name, ort.join("libonnxruntime.so"))?;
    Ok(ort)
}

/// A `buildah run` of `image`'s entrypoint as its user with `env`.
fn run_args(
    buildah: &Buildah,
    container: &str,
    user: &str,
    env: &[(String, String)],
) -> Vec<String> {
    let mut args = buildah.storage_args();
    args.extend([
        "run".into(),
        "--isolation".into(),
        "chroot".into(),
        "--user".into(),
        user.into(),
    ]);
    for (key, value) in env {
        args.push("--env".into());
        args.push(format!("{key}={value}"));
    }
    args.extend([
        container.to_string(),
        "--".into(),
        "/usr/local/bin/orbit-process".into(),
    ]);
    args
}

/// One image to build and run: a compose service, its Dockerfile target and binary, and a
/// sync call it must answer.
struct Case {
    service: &'static str,
    target: &'static str,
    bin: &'static str,
    request: &'static str,
}

const CASES: &[Case] = &[
    Case {
        service: "moving_average",
        target: "process",
        bin: "moving_average",
        request: r#"{"data":[1,2,3,4],"parameters":{"window":2}}"#,
    },
    // The model image: ONNX Runtime and the model repository inside, the LSTM taking part.
    Case {
        service: "forecast",
        target: "models",
        bin: "forecast",
        request: r#"{"data":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20],"parameters":{"horizon":3}}"#,
    },
];

#[tokio::test]
async fn images_built_from_the_dockerfile_serve_through_composes_nats_as_an_unprivileged_user(
) -> anyhow::Result<()> {
    let env = TestEnv::load()?;
    let buildah = Buildah::new()?;
    let staging = buildah.root.join("staging");
    let bins: Vec<&str> = CASES.iter().map(|case| case.bin).collect();
    let ort_library = PathBuf::from(env.get("ORT_DYLIB_PATH"));

    // The two base images no registry can give here: the runtime's shared libraries (those
    // the binaries and ONNX Runtime link), and the build stage's and ort stage's outputs.
    let mut linked: Vec<PathBuf> = bins.iter().map(|bin| binary(bin)).collect();
    linked.push(binary("orbit-probe"));
    linked.push(ort_library.clone());
    let files: Vec<(PathBuf, String)> = linked_libraries(&linked)?
        .into_iter()
        .map(|path| {
            let inside = path.display().to_string();
            (path, inside)
        })
        .collect();
    buildah.image_from("localhost/orbit-test-runtime:e2e", &files)?;
    let out = out_layout(&staging, &bins)?;
    buildah.image_from("localhost/orbit-test-binaries:e2e", &[(out, "/out".into())])?;
    let ort = ort_layout(&staging, &ort_library)?;
    buildah.image_from("localhost/orbit-test-ort:e2e", &[(ort, "/ort".into())])?;

    // compose.yaml's NATS server: deploy/nats/single.conf with the generated users, their
    // passwords from a .env written by `orbit deploy env` (on free ports, a store of its own).
    let dir = buildah.root.join("compose");
    std::fs::create_dir_all(&dir)?;
    let env_file = dir.join(".env");
    orbit_deploy(&["env", &env_file.display().to_string()])?;
    let secrets: Vec<(String, String)> = std::fs::read_to_string(&env_file)?
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let admin_password = secrets
        .iter()
        .find(|(k, _)| k == "ORBIT_NATS_PASSWORD_ADMIN")
        .map(|(_, v)| v.clone())
        .context("no admin password in the .env")?;
    let (nats_port, monitor_port) = (free_port()?, free_port()?);
    let mut nats_env: Vec<(&str, String)> = secrets
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    nats_env.push(("NATS_SERVER_NAME", "orbit-1".into()));
    let _nats = Proc::spawn_path(
        "compose-nats",
        &workspace_root().join(".orbit/tools/nats/bin/nats-server"),
        &[
            "-c".into(),
            workspace_root()
                .join("deploy/nats/single.conf")
                .display()
                .to_string(),
            "-p".into(),
            nats_port.to_string(),
            "-m".into(),
            monitor_port.to_string(),
            "--store_dir".into(),
            dir.join("nats").display().to_string(),
        ],
        &env,
        &nats_env,
    )?;
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let admin = wait_until(
        "the compose NATS server",
        Duration::from_secs(30),
        || async {
            Ok(async_nats::ConnectOptions::with_user_and_password(
                "admin".into(),
                admin_password.clone(),
            )
            .connect(&nats_url)
            .await
            .ok())
        },
    )
    .await?;

    let mut running = Vec::new();
    let mut outcome = Ok(());
    for case in CASES {
        let image = format!("localhost/orbit/{}:e2e", case.bin);
        buildah.run(&[
            "build",
            "--quiet",
            "--isolation",
            "chroot",
            "--pull-never",
            "--target",
            case.target,
            "--build-arg",
            &format!("BIN={}", case.bin),
            "--build-arg",
            "BINARIES=localhost/orbit-test-binaries:e2e",
            "--build-arg",
            "ORT_STAGE=localhost/orbit-test-ort:e2e",
            "--build-arg",
            "RUNTIME_IMAGE=localhost/orbit-test-runtime:e2e",
            "--tag",
            &image,
            "--file",
            "Dockerfile",
            ".",
        ])?;
        let config: Value =
            serde_json::from_str(&buildah.run(&["inspect", "--type", "image", &image])?)?;
        let oci = &config["OCIv1"]["config"];
        assert_eq!(oci["User"], "65532:65532", "{oci}");
        assert_eq!(oci["Entrypoint"], json!(["/usr/local/bin/orbit-process"]));

        // The image's entrypoint, as its user, with the environment compose.yaml gives the
        // service (its own NATS user and password), on this machine's network (chroot
        // isolation has no network namespace, so the server's address is swapped in).
        let container = buildah.run(&["from", "--pull-never", &image])?;
        let metrics_port = free_port()?;
        let mut service_env: serde_json::Map<String, Value> =
            serde_json::from_str(&orbit_deploy(&[
                "environment",
                case.service,
                &env_file.display().to_string(),
            ])?)?;
        assert_eq!(service_env["ORBIT_NATS_USER"], case.service);
        service_env.insert("ORBIT_NATS_URL".into(), json!(nats_url));
        service_env.insert(
            "ORBIT_METRICS_ADDR".into(),
            json!(format!("127.0.0.1:{metrics_port}")),
        );
        let service_env: Vec<(String, String)> = service_env
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
            .collect();
        let user = oci["User"].as_str().unwrap_or_default();
        // The container's environment is `--env` above; a NATS user set here only stops the
        // harness handing buildah itself the test stack's credentials.
        running.push(Proc::spawn_path(
            &format!("image-{}", case.bin),
            Path::new("/usr/bin/buildah"),
            &run_args(&buildah, &container, user, &service_env),
            &env,
            &[("ORBIT_NATS_USER", "unused".into())],
        )?);
        outcome = serves(&buildah, &admin, case, &container, metrics_port).await;
        if outcome.is_err() {
            break;
        }
    }
    // SIGTERM stops buildah and the process it runs in the container.
    for mut process in running {
        process.terminate()?;
    }
    outcome
}

/// A sync call, as `nats req orbit.fn.<service>` makes it, answered by the containerised
/// replica (the only one on this server), and the image's own health probe run inside it, as
/// compose's health check runs it.
async fn serves(
    buildah: &Buildah,
    admin: &async_nats::Client,
    case: &Case,
    container: &str,
    metrics_port: u16,
) -> anyhow::Result<()> {
    let subject = format!("orbit.fn.{}", case.service);
    let body: Value = wait_until(
        &format!("the containerised {} answering", case.service),
        Duration::from_secs(60),
        || async {
            let request = admin.request(subject.clone(), case.request.into());
            Ok(
                match tokio::time::timeout(Duration::from_secs(2), request).await {
                    Ok(Ok(reply)) if reply.headers.is_none() => {
                        serde_json::from_slice(&reply.payload).ok()
                    }
                    _ => None,
                },
            )
        },
    )
    .await?;
    assert_eq!(body["status"], "succeeded", "{body}");
    assert!(body["output"].is_object(), "{body}");
    if case.service == "moving_average" {
        assert_eq!(body["output"]["values"], json!([1.5, 2.5, 3.5]), "{body}");
    } else {
        assert_eq!(
            body["output"]["forecast"].as_array().map(Vec::len),
            Some(3),
            "{body}"
        );
        let members = body["output"]["members"].to_string();
        assert!(
            members.contains("lstm"),
            "the LSTM (ONNX Runtime in the image) took no part: {body}"
        );
    }
    let probe = buildah.run(&[
        "run",
        "--isolation",
        "chroot",
        container,
        "--",
        "/usr/local/bin/orbit-probe",
        &format!("http://127.0.0.1:{metrics_port}/metrics"),
    ]);
    assert!(probe.is_ok(), "orbit-probe in the image: {probe:?}");
    Ok(())
}
