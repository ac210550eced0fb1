//! `KEY=VALUE` files: the stack's env file and each process's credentials. One reader for
//! every launcher, so they agree on what a line means.

use std::collections::BTreeMap;
use std::path::Path;

/// The pairs of `text`, in order: blank lines and `#` comments skipped, whitespace around the
/// key and the value trimmed, a value kept whole after the first `=`.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// The file at `path`, as a map (a later line wins).
pub fn read(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    Ok(parse(&std::fs::read_to_string(path)?).into_iter().collect())
}

/// Writes `pairs` to `path` with mode 600 (they hold secrets).
pub fn write(path: &Path, pairs: &[(String, String)]) -> std::io::Result<()> {
    let text: String = pairs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    crate::secrets::write_private(path, &text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn comments_and_blank_lines_are_skipped_and_values_kept_whole() {
        let pairs = super::parse("# a comment\n\nA=1\n B = x=y \nnot a pair\n");
        assert_eq!(
            pairs,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
    }
}
