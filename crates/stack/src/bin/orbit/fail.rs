//! How `orbit` fails: one line naming what is wrong, and an exit code that says whose fault
//! it is (see the crate's doc comment).

use std::fmt;

#[derive(Debug)]
pub enum Failure {
    /// What was typed is wrong (exit 2).
    Usage(String),
    /// The service answered with an error, or the job failed (exit 3).
    Refused(String),
    /// No answer from the service (exit 4).
    Unreachable(String),
    /// A local failure: a build, a file, a process (exit 1).
    Local(String),
}

impl Failure {
    pub fn code(&self) -> u8 {
        match self {
            Self::Local(_) => 1,
            Self::Usage(_) => 2,
            Self::Refused(_) => 3,
            Self::Unreachable(_) => 4,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Usage(text)
            | Self::Refused(text)
            | Self::Unreachable(text)
            | Self::Local(text) => text,
        };
        // One line, whatever the cause chain held.
        write!(f, "{}", text.replace('\n', " "))
    }
}

/// A local failure, with what was being done.
pub fn local<E: fmt::Display>(what: impl fmt::Display) -> impl FnOnce(E) -> Failure {
    move |err| Failure::Local(format!("{what}: {err}"))
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Self::Local(err.to_string())
    }
}

impl From<orbit_stack::manifest::ManifestError> for Failure {
    fn from(err: orbit_stack::manifest::ManifestError) -> Self {
        Self::Local(err.to_string())
    }
}
