//! The model repository on disk: `<root>/<name>/config.toml` and `<root>/<name>/<version>/
//! model.onnx` (with an optional `model.onnx.sha256` beside it, checked at load).
//!
//! A scan reads only directory entries and file metadata, so polling it every second costs a
//! few `stat` calls per model. Each file gets a fingerprint (size and modification time); a
//! change of fingerprint is what makes the host load a version again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File name of a version's model.
pub const MODEL_FILE: &str = "model.onnx";
/// File name of a model's configuration.
pub const CONFIG_FILE: &str = "config.toml";

/// What identifies one state of a file: if either changes, the file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl Fingerprint {
    fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// One version folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFolder {
    pub model: PathBuf,
    /// Of the model file and of its checksum file, if any.
    pub fingerprint: (Fingerprint, Option<Fingerprint>),
}

/// One model folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFolder {
    pub name: String,
    pub path: PathBuf,
    pub config: Option<Fingerprint>,
    /// By version number.
    pub versions: BTreeMap<u64, VersionFolder>,
}

impl ModelFolder {
    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }
}

/// Reads the repository at `root`: every model folder whose name is a valid function name
/// (and, with `only`, listed there), with its numbered version folders that hold a model.
/// Anything else is skipped, with a debug line.
pub fn scan(root: &Path, only: Option<&[String]>) -> std::io::Result<Vec<ModelFolder>> {
    let mut models = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !path.is_dir() || name.starts_with('.') {
            continue;
        }
        if orbit_contract::descriptor::check_name(&name).is_err() {
            tracing::debug!(folder = %path.display(), "not a valid function name; skipped");
            continue;
        }
        if only.is_some_and(|only| !only.iter().any(|n| n == &name)) {
            continue;
        }
        let mut versions = BTreeMap::new();
        for version in std::fs::read_dir(&path)? {
            let version = version?;
            let Some(number) = version
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let model = version.path().join(MODEL_FILE);
            let Some(fingerprint) = Fingerprint::of(&model) else {
                continue;
            };
            let checksum = Fingerprint::of(&checksum_path(&model));
            versions.insert(
                number,
                VersionFolder {
                    model,
                    fingerprint: (fingerprint, checksum),
                },
            );
        }
        let config = Fingerprint::of(&path.join(CONFIG_FILE));
        if versions.is_empty() && config.is_none() {
            continue;
        }
        models.push(ModelFolder {
            name,
            path,
            config,
            versions,
        });
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Where a model file's checksum lives (`model.onnx.sha256`).
pub fn checksum_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_models_and_numbered_versions_only() {
        let root = std::env::temp_dir().join(format!("orbit-repo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["good/1", "good/12", "good/latest", "bad name/1", "empty"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "good/1/model.onnx",
            "good/12/model.onnx",
            "good/latest/model.onnx",
            "bad name/1/model.onnx",
        ] {
            std::fs::write(root.join(file), b"x").unwrap();
        }
        std::fs::write(root.join("good/config.toml"), b"").unwrap();
        let models = scan(&root, None).unwrap();
        assert_eq!(models.len(), 1, "{models:?}");
        assert_eq!(models[0].name, "good");
        assert_eq!(
            models[0].versions.keys().copied().collect::<Vec<_>>(),
            vec![1, 12]
        );
        assert!(models[0].config.is_some());
        assert!(scan(&root, Some(&["other".to_string()]))
            .unwrap()
            .is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
