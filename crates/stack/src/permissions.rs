//! NATS users, one per component, from `nats/permissions.toml` and the manifest: which
//! subjects each may publish and subscribe to, and the server's `authorization` block.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::manifest::{Kind, Manifest};

#[derive(Debug, thiserror::Error)]
pub enum PermissionsError {
    #[error("nats/permissions.toml: {0}")]
    Read(#[from] std::io::Error),
    #[error("nats/permissions.toml: {0}")]
    Syntax(#[from] toml::de::Error),
    #[error("nats/permissions.toml: user {user}: no template [{template}]")]
    Template { user: String, template: String },
}

/// Users that are no process of the stack: the operators' and the callers'.
pub const NOT_PROCESSES: [&str; 2] = ["admin", "caller"];

/// The user a function not in the manifest runs as.
pub const SHARED_FUNCTION_USER: &str = "functions";

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rights {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    allow_responses: Option<toml::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    template: Option<String>,
    name: Option<String>,
    log: Option<String>,
    common: Option<bool>,
    #[serde(flatten)]
    rights: Rights,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    common: Rights,
    function: Rights,
    #[serde(default)]
    user: BTreeMap<String, UserSpec>,
}

/// One NATS user and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsUser {
    pub name: String,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// `allow_responses` as the server takes it (`true`, or `{max = N}`), when granted.
    pub allow_responses: Option<serde_json::Value>,
}

impl NatsUser {
    /// Whether this user is a process of the stack (not the operator's or a caller's).
    pub fn is_process(&self) -> bool {
        !NOT_PROCESSES.contains(&self.name.as_str())
    }
}

/// Every user: those of `nats/permissions.toml`, then a function user for each function of
/// the manifest that has none there, in name order.
pub fn users(root: &Path, manifest: &Manifest) -> Result<Vec<NatsUser>, PermissionsError> {
    let text = std::fs::read_to_string(root.join("nats/permissions.toml"))?;
    users_of(&text, manifest)
}

fn users_of(text: &str, manifest: &Manifest) -> Result<Vec<NatsUser>, PermissionsError> {
    let spec: Spec = toml::from_str(text)?;
    let mut declared = spec.user.clone();
    for process in manifest.of_kind(Kind::Function) {
        declared
            .entry(process.name.clone())
            .or_insert_with(|| UserSpec {
                template: Some("function".into()),
                ..UserSpec::default()
            });
    }
    let mut users = Vec::with_capacity(declared.len());
    for (user, own) in declared {
        let template = match own.template.as_deref() {
            None => Rights::default(),
            Some("function") => spec.function.clone(),
            Some(other) => {
                return Err(PermissionsError::Template {
                    user,
                    template: other.into(),
                })
            }
        };
        let name = own.name.clone().unwrap_or_else(|| user.clone());
        let log = own.log.clone().unwrap_or_else(|| user.clone());
        let fill = |subject: &String| {
            subject
                .replace("{user}", &user)
                .replace("{name}", &name)
                .replace("{log}", &log)
        };
        let common = if own.common.unwrap_or(true) {
            spec.common.clone()
        } else {
            Rights::default()
        };
        let gather = |pick: fn(&Rights) -> &Vec<String>| {
            let mut out: Vec<String> = Vec::new();
            for subject in pick(&common)
                .iter()
                .chain(pick(&template))
                .chain(pick(&own.rights))
            {
                let subject = fill(subject);
                if !out.contains(&subject) {
                    out.push(subject);
                }
            }
            out
        };
        let allow_responses = own
            .rights
            .allow_responses
            .clone()
            .or(template.allow_responses.clone())
            .and_then(|value| serde_json::to_value(value).ok())
            .filter(|value| value != &serde_json::Value::Bool(false));
        users.push(NatsUser {
            publish: gather(|r| &r.publish),
            subscribe: gather(|r| &r.subscribe),
            allow_responses,
            name: user,
        });
    }
    Ok(users)
}

/// The user process `name` runs as: its own, else (a function with none) the shared one.
pub fn user_of<'a>(users: &'a [NatsUser], name: &str) -> &'a str {
    users
        .iter()
        .find(|u| u.name == name)
        .map_or(SHARED_FUNCTION_USER, |u| u.name.as_str())
}

/// The NATS server's `authorization` block for `users`, each password written as
/// `password_of(user)` returns it: a quoted literal for the local stacks, an environment
/// reference (`$NAME`) for the deployment's servers.
pub fn authorization(users: &[NatsUser], password_of: impl Fn(&str) -> String) -> String {
    let blocks: Vec<String> = users
        .iter()
        .map(|user| {
            let mut permissions = serde_json::json!({
                "publish": {"allow": user.publish},
                "subscribe": {"allow": user.subscribe},
            });
            if let Some(responses) = &user.allow_responses {
                permissions["allow_responses"] = responses.clone();
            }
            // JSON is valid NATS configuration syntax.
            format!(
                "    {{user: {}, password: {}, permissions: {}}}",
                serde_json::Value::String(user.name.clone()),
                password_of(&user.name),
                permissions
            )
        })
        .collect();
    format!(
        "authorization {{\n  users: [\n{}\n  ]\n}}\n",
        blocks.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_of_the_manifest_has_its_own_user_and_the_caller_has_no_common_rights() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let manifest = Manifest::load(&root).expect("stack.toml");
        let users = users(&root, &manifest).expect("permissions");
        let forecast = users
            .iter()
            .find(|u| u.name == "forecast")
            .expect("forecast");
        assert!(forecast
            .subscribe
            .contains(&"orbit.fn.forecast".to_string()));
        assert!(forecast
            .publish
            .contains(&"orbit.logs.forecast".to_string()));
        let caller = users.iter().find(|u| u.name == "caller").expect("caller");
        assert_eq!(caller.subscribe, ["_INBOX.>"]);
        assert!(!caller.is_process());
        assert_eq!(user_of(&users, "not-in-the-manifest"), SHARED_FUNCTION_USER);
        let block = authorization(&users, |user| format!("${user}"));
        assert!(block.contains("{user: \"gateway\", password: $gateway, permissions: {"));
    }
}
