//! The Orbit stack, typed, in one library: the manifest (`stack.toml`), where a local stack
//! lives, its credentials, starting, supervising and stopping its processes, and the
//! deployment files generated from it. The `orbit` command, the end-to-end tests, the
//! benchmark and the chaos tool all use it, so the stack is described and run one way.

pub mod credentials;
pub mod deploy;
pub mod envfile;
pub mod layout;
pub mod manifest;
pub mod permissions;
pub mod pids;
pub mod secrets;
pub mod supervise;

pub use layout::{Layout, Ports, StackEnv};
pub use manifest::{Kind, Manifest, Process, Program};
