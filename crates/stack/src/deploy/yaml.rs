//! YAML out: documents built in order (structs, or [`map`] for one-off shapes) and written by
//! serde_yaml, with the one thing it leaves to the reader made explicit.
//!
//! serde_yaml quotes a string that YAML 1.2 would read as something else (`"1"`, `"true"`),
//! but not one that only YAML 1.1 would (`on`, `off`, `yes`, `no`, `1:30`): PyYAML (the
//! Kubernetes validator), go-yaml v2 (Prometheus, older kubectl) read those as booleans and
//! numbers. [`document`] quotes them too, so every reader sees the strings that were meant.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_yaml::{Mapping, Value};

use super::DeployError;

/// A mapping that keeps its keys in the order they were first inserted; inserting a key
/// again replaces its value in place (as a Python dict does).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ordered<V>(Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> Ordered<V> {
    pub fn insert(&mut self, key: impl Into<String>, value: V) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V> FromIterator<(K, V)> for Ordered<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(items: I) -> Self {
        let mut out = Self::default();
        for (key, value) in items {
            out.insert(key, value);
        }
        out
    }
}

impl<K: Into<String>, V> Extend<(K, V)> for Ordered<V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, items: I) {
        for (key, value) in items {
            self.insert(key, value);
        }
    }
}

impl<V> IntoIterator for Ordered<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A YAML mapping of `pairs`, in their order.
pub(crate) fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(
        pairs
            .into_iter()
            .map(|(key, value)| (Value::from(key), value))
            .collect::<Mapping>(),
    )
}

/// A YAML sequence of strings.
pub(crate) fn strings<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Sequence(items.iter().map(|s| Value::from(s.as_ref())).collect())
}

/// `value` as one YAML document (no `---`), every string read back as a string by YAML 1.1
/// readers too.
pub(crate) fn document(value: &impl Serialize) -> Result<String, DeployError> {
    let mut value = serde_yaml::to_value(value)?;
    let mut quoted = Vec::new();
    mark(&mut value, &mut quoted);
    let mut text = serde_yaml::to_string(&value)?;
    for (index, original) in quoted.iter().enumerate() {
        text = text.replace(&marker(index), &format!("'{original}'"));
    }
    Ok(text)
}

/// `documents` as one YAML stream, `---` between them.
pub(crate) fn documents(values: &[Value]) -> Result<String, DeployError> {
    let texts = values.iter().map(document).collect::<Result<Vec<_>, _>>()?;
    Ok(texts.join("---\n"))
}

/// A stand-in for the `index`th string to quote: plain in any YAML, and in no real document.
fn marker(index: usize) -> String {
    format!("orbit0yaml0quoted0{index}x")
}

/// Replaces every string (keys included) that a YAML 1.1 reader would take for a boolean or
/// a number with a [`marker`], remembering the strings in `quoted`.
fn mark(value: &mut Value, quoted: &mut Vec<String>) {
    let swap = |text: &str, quoted: &mut Vec<String>| -> Option<Value> {
        if !ambiguous_in_yaml_1_1(text) {
            return None;
        }
        let index = match quoted.iter().position(|q| q == text) {
            Some(index) => index,
            None => {
                quoted.push(text.to_string());
                quoted.len() - 1
            }
        };
        Some(Value::String(marker(index)))
    };
    match value {
        Value::String(text) => {
            if let Some(replacement) = swap(text, quoted) {
                *value = replacement;
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|item| mark(item, quoted)),
        Value::Mapping(mapping) => {
            let entries = std::mem::take(mapping);
            for (mut key, mut item) in entries {
                mark(&mut key, quoted);
                mark(&mut item, quoted);
                mapping.insert(key, item);
            }
        }
        Value::Tagged(tagged) => mark(&mut tagged.value, quoted),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Whether YAML 1.1 could read `text`, written plain, as other than that string: its
/// booleans (`yes`, `off`, `y`...), and anything made of digits and number punctuation
/// (numbers with `_`, base 60 `1:30`, dates); the cases YAML 1.2 shares serde_yaml quotes
/// already, and quoting them again changes nothing.
fn ambiguous_in_yaml_1_1(text: &str) -> bool {
    const BOOLEANS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    if BOOLEANS.contains(&text) {
        return true;
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "_.:+-xXoObB".contains(c))
        && !text.contains(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_booleans_and_numbers_are_quoted_and_read_back_as_strings() {
        let value = map([
            ("ORBIT_AUTH", "on".into()),
            ("ORBIT_MIGRATE", "off".into()),
            ("cpus", "2".into()),
            ("retries", 20.into()),
            ("when", "1:30".into()),
            ("interval", "5s".into()),
            ("list", strings(&["no", "yes please"])),
            ("on", true.into()),
        ]);
        let text = document(&value).expect("yaml");
        assert!(text.contains("ORBIT_AUTH: 'on'\n"), "{text}");
        assert!(text.contains("ORBIT_MIGRATE: 'off'\n"), "{text}");
        assert!(text.contains("when: '1:30'\n"), "{text}");
        assert!(text.contains("interval: 5s\n"), "{text}");
        assert!(text.contains("'on': true\n"), "{text}");
        let back: Value = serde_yaml::from_str(&text).expect("parse");
        assert_eq!(back, value);
        let keys: Vec<&str> = back
            .as_mapping()
            .expect("mapping")
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys[..3], ["ORBIT_AUTH", "ORBIT_MIGRATE", "cpus"]);
    }

    #[test]
    fn an_ordered_map_keeps_the_first_position_of_a_key() {
        let mut env: Ordered<String> = [("A", "1".to_string()), ("B", "2".to_string())]
            .into_iter()
            .collect();
        env.insert("A", "3".to_string());
        let pairs: Vec<_> = env.iter().collect();
        assert_eq!(
            pairs,
            [
                (&"A".to_string(), &"3".to_string()),
                (&"B".to_string(), &"2".to_string())
            ]
        );
        assert_eq!(
            documents(&[map([("a", 1.into())]), map([("b", 2.into())])]).expect("yaml"),
            "a: 1\n---\nb: 2\n"
        );
    }
}
