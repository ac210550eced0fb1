//! Compose's variable interpolation, as `docker compose config` applies it to
//! `compose.yaml` with the values of `.env`: what [`super::environment`] resolves a service's
//! environment with.

use super::DeployError;

/// `text` with every variable put in by `lookup` (`None`: unset), in Compose's syntax:
///
/// | form | gives |
/// |---|---|
/// | `$$` | a literal `$` |
/// | `$NAME`, `${NAME}` | its value; empty when unset |
/// | `${NAME:-default}` | `default` when unset or empty |
/// | `${NAME-default}` | `default` when unset |
/// | `${NAME:?message}` | an error with `message` when unset or empty |
/// | `${NAME?message}` | an error with `message` when unset |
/// | `${NAME:+alternative}` | `alternative` when set and not empty, else empty |
/// | `${NAME+alternative}` | `alternative` when set, else empty |
///
/// A default, message or alternative is interpolated in turn (`${A:-${B}}`). A `$` that
/// starts none of these is an error, as in Compose.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, DeployError> {
    expand(text, &lookup)
}

fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, DeployError> {
    let invalid = |problem: &str| DeployError::Interpolation {
        text: text.to_string(),
        problem: problem.to_string(),
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = closing(body).ok_or_else(|| invalid("a ${ without its }"))?;
            out.push_str(&braced(&body[..end], lookup).map_err(|err| match err {
                Braced::Invalid(problem) => invalid(&problem),
                Braced::Failed(err) => err,
            })?);
            rest = &body[end + 1..];
        } else {
            let length = name_length(after);
            if length == 0 {
                return Err(invalid("a $ followed by no variable name"));
            }
            out.push_str(&lookup(&after[..length]).unwrap_or_default());
            rest = &after[length..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name `text` starts with: `[_A-Za-z][_A-Za-z0-9]*`.
fn name_length(text: &str) -> usize {
    match text.chars().next() {
        Some(c) if c == '_' || c.is_ascii_alphabetic() => text
            .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
            .unwrap_or(text.len()),
        _ => 0,
    }
}

/// Where the `}` that closes a `${` is in `body` (what follows the `${`), past any nested
/// `${...}` and `$$`.
fn closing(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

enum Braced {
    /// Not Compose's syntax.
    Invalid(String),
    /// A required variable is missing, or a nested interpolation failed.
    Failed(DeployError),
}

/// The value of what is between `${` and `}`.
fn braced(inner: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Braced> {
    let length = name_length(inner);
    if length == 0 {
        return Err(Braced::Invalid(format!("${{{inner}}} names no variable")));
    }
    let name = &inner[..length];
    let value = lookup(name);
    let operation = &inner[length..];
    let nested = |argument: &str| expand(argument, lookup).map_err(Braced::Failed);
    let required = |message: String| {
        Braced::Failed(DeployError::Required {
            name: name.to_string(),
            message,
        })
    };
    let set = value.is_some();
    let filled = value.as_deref().is_some_and(|v| !v.is_empty());
    let given = || value.clone().unwrap_or_default();
    if operation.is_empty() {
        return Ok(given());
    }
    let (colon, rest) = match operation.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, operation),
    };
    // With a colon, an empty value counts as unset.
    let present = if colon { filled } else { set };
    let mut chars = rest.chars();
    let operator = chars.next();
    let argument = chars.as_str();
    match operator {
        Some('-') => {
            if present {
                Ok(given())
            } else {
                nested(argument)
            }
        }
        Some('?') => {
            if present {
                Ok(given())
            } else {
                Err(required(nested(argument)?))
            }
        }
        Some('+') => {
            if present {
                nested(argument)
            } else {
                Ok(String::new())
            }
        }
        _ => Err(Braced::Invalid(format!(
            "${{{inner}}}: after the name comes }}, :-, -, :?, ?, :+ or +"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str) -> Result<String, DeployError> {
        interpolate(text, |name| match name {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            "OTHER" => Some("other".to_string()),
            _ => None,
        })
    }

    fn ok(text: &str) -> String {
        with(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(ok("$$"), "$");
        assert_eq!(ok("a$$SET"), "a$SET");
        assert_eq!(ok("$${SET}"), "${SET}");
        assert_eq!(
            ok("REDISCLI_AUTH=\"$$ORBIT_REDIS_PASSWORD\""),
            "REDISCLI_AUTH=\"$ORBIT_REDIS_PASSWORD\""
        );
    }

    #[test]
    fn plain_names_unbraced_and_braced() {
        assert_eq!(ok("$SET"), "value");
        assert_eq!(ok("x$SET.y"), "xvalue.y");
        assert_eq!(ok("$SET_more"), "");
        assert_eq!(ok("${SET}"), "value");
        assert_eq!(ok("${SET}_more"), "value_more");
        assert_eq!(ok("${UNSET}"), "");
        assert_eq!(ok("$UNSET!"), "!");
        assert_eq!(ok("no variables"), "no variables");
    }

    #[test]
    fn colon_dash_defaults_when_unset_or_empty() {
        assert_eq!(ok("${SET:-d}"), "value");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${UNSET:-d}"), "d");
        assert_eq!(ok("${UNSET:-}"), "");
        assert_eq!(
            ok("${ORBIT_BIND:-127.0.0.1}:8000:8000"),
            "127.0.0.1:8000:8000"
        );
    }

    #[test]
    fn dash_defaults_only_when_unset() {
        assert_eq!(ok("${SET-d}"), "value");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${UNSET-d}"), "d");
    }

    #[test]
    fn colon_question_fails_when_unset_or_empty() {
        assert_eq!(ok("${SET:?needed}"), "value");
        for text in ["${EMPTY:?needed}", "${UNSET:?needed}"] {
            match with(text) {
                Err(DeployError::Required { name, message }) => {
                    assert!(text.contains(&name));
                    assert_eq!(message, "needed");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let message = with("postgres://u:${UNSET:?see .env.example}@pg").expect_err("unset");
        assert_eq!(message.to_string(), "UNSET: see .env.example");
    }

    #[test]
    fn question_fails_only_when_unset() {
        assert_eq!(ok("${SET?needed}"), "value");
        assert_eq!(ok("${EMPTY?needed}"), "");
        assert!(matches!(
            with("${UNSET?needed}"),
            Err(DeployError::Required { .. })
        ));
    }

    #[test]
    fn colon_plus_replaces_a_value_that_is_set_and_not_empty() {
        assert_eq!(ok("${SET:+alt}"), "alt");
        assert_eq!(ok("${EMPTY:+alt}"), "");
        assert_eq!(ok("${UNSET:+alt}"), "");
    }

    #[test]
    fn plus_replaces_a_value_that_is_set() {
        assert_eq!(ok("${SET+alt}"), "alt");
        assert_eq!(ok("${EMPTY+alt}"), "alt");
        assert_eq!(ok("${UNSET+alt}"), "");
    }

    #[test]
    fn arguments_are_interpolated_in_turn() {
        assert_eq!(ok("${UNSET:-${OTHER}}"), "other");
        assert_eq!(ok("${UNSET:-a-${UNSET:-b}-c}!"), "a-b-c!");
        assert_eq!(ok("${SET:+[$OTHER]}"), "[other]");
        assert_eq!(ok("${UNSET:-$$}"), "$");
        let nested = with("${UNSET:?${OTHER} is needed}").expect_err("unset");
        assert_eq!(nested.to_string(), "UNSET: other is needed");
    }

    #[test]
    fn what_is_not_compose_syntax_is_an_error() {
        for text in [
            "$", "a $ b", "$1", "${", "${SET", "${}", "${1X}", "${SET:x}", "${SET!}",
        ] {
            assert!(
                matches!(with(text), Err(DeployError::Interpolation { .. })),
                "{text}: {:?}",
                with(text)
            );
        }
    }
}
