//! Generated secrets of a local stack: one file per secret under `.orbit/<env>/secrets/`
//! (mode 600, the folder 700), made on first use and kept, so a restart keeps its passwords.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The secrets folder of one stack.
#[derive(Debug, Clone)]
pub struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The secret `name`, made (32 hex digits) if it does not exist yet.
    pub fn get(&self, name: &str) -> std::io::Result<String> {
        let path = self.dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let value = text.trim();
            if !value.is_empty() {
                return Ok(value.to_string());
            }
        }
        let value = random_hex(16)?;
        write_private(&path, &format!("{value}\n"))?;
        Ok(value)
    }
}

/// `bytes` random bytes from the operating system, as hex.
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(std::io::Error::other)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `text` to `path` readable by its owner only, through a temporary file and a rename
/// (a reader never sees half of it); the parent folder is made with mode 700.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
