//! Where the stack's Kafka is and how a client proves who it is: the bootstrap servers and
//! every librdkafka security setting, from `ORBIT_KAFKA_*` variables and an optional
//! `client.properties` file (the Java-style file Confluent Cloud and others hand out).
//!
//! It exists so that every client of the stack that talks to its Kafka (the bridge's producer,
//! consumers and admin client, and anything else that links this crate) reaches a managed
//! cluster over TLS and SASL with one set of settings; passwords come from files and never
//! reach a log, and a setting that cannot work stops the process at startup with the variable
//! (or the file's line) that holds it.
//!
//! Precedence, lowest first: librdkafka's defaults, the properties file
//! (`ORBIT_KAFKA_PROPERTIES_FILE`), `ORBIT_KAFKA_PROP_<NAME>` variables, then the named
//! variables ([`NAMED`]). Each client then adds its own settings on top (the bridge's producer
//! its idempotence and acks, its consumers their offset handling).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use orbit_runtime::config::ConfigError;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

/// The Java-style properties file applied to every client.
pub const PROPERTIES_FILE: &str = "ORBIT_KAFKA_PROPERTIES_FILE";
/// `ORBIT_KAFKA_PROP_SASL_USERNAME=x` sets `sasl.username`.
pub const PROPERTY_PREFIX: &str = "ORBIT_KAFKA_PROP_";
/// Where the bootstrap servers are when nothing says otherwise.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// What a secret's value is replaced with wherever settings are shown.
pub const REDACTED: &str = "[redacted]";

/// How a named variable's value becomes a property's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The variable's value as it is.
    Value,
    /// One of [`SECURITY_PROTOCOLS`], any case.
    SecurityProtocol,
    /// One of [`SASL_MECHANISMS`], any case.
    SaslMechanism,
    /// A path that must exist (librdkafka's `probe` is let through for the CA).
    Path,
    /// A file holding a secret; its contents, without the trailing line break, are the value.
    SecretFile,
}

/// The named variables and the librdkafka property each sets.
pub const NAMED: &[(&str, &str, Source)] = &[
    ("ORBIT_KAFKA_BROKERS", "bootstrap.servers", Source::Value),
    (
        "ORBIT_KAFKA_SECURITY_PROTOCOL",
        "security.protocol",
        Source::SecurityProtocol,
    ),
    (
        "ORBIT_KAFKA_SASL_MECHANISM",
        "sasl.mechanisms",
        Source::SaslMechanism,
    ),
    ("ORBIT_KAFKA_SASL_USERNAME", "sasl.username", Source::Value),
    (
        "ORBIT_KAFKA_SASL_PASSWORD_FILE",
        "sasl.password",
        Source::SecretFile,
    ),
    (
        "ORBIT_KAFKA_SSL_CA_LOCATION",
        "ssl.ca.location",
        Source::Path,
    ),
    (
        "ORBIT_KAFKA_SSL_CERTIFICATE_LOCATION",
        "ssl.certificate.location",
        Source::Path,
    ),
    (
        "ORBIT_KAFKA_SSL_KEY_LOCATION",
        "ssl.key.location",
        Source::Path,
    ),
    (
        "ORBIT_KAFKA_SSL_KEY_PASSWORD_FILE",
        "ssl.key.password",
        Source::SecretFile,
    ),
];

/// librdkafka's `security.protocol` values.
pub const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
/// The SASL mechanisms the bridge logs in with (librdkafka with OpenSSL; no Cyrus SASL, no
/// curl).
pub const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// librdkafka's aliases, written under one name so that the last setting wins whichever name
/// it used (librdkafka would apply both, in no set order).
const ALIASES: &[(&str, &str)] = &[
    ("metadata.broker.list", "bootstrap.servers"),
    ("sasl.mechanism", "sasl.mechanisms"),
    ("queue.buffering.max.ms", "linger.ms"),
    ("compression.codec", "compression.type"),
    ("request.required.acks", "acks"),
    ("message.send.max.retries", "retries"),
    ("max.in.flight.requests.per.connection", "max.in.flight"),
];

/// Lines of a Java client's properties file that are not librdkafka's, skipped: the Schema
/// Registry's settings, serializers, and the JVM's DNS lookup mode.
const JAVA_ONLY_PREFIXES: &[&str] = &[
    "schema.registry.",
    "basic.auth.",
    "key.serializer",
    "value.serializer",
    "key.deserializer",
    "value.deserializer",
    "client.dns.lookup",
];

/// Whether `name`'s value is a secret: never logged, never put in an error message.
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("password")
        || name.contains("secret")
        || name.contains("jaas")
        || name == "ssl.key.pem"
        || name == "sasl.oauthbearer.config"
}

/// Where a property's value came from, so an error can name what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A line of the properties file.
    File { path: PathBuf, line: usize },
    /// An environment variable.
    Variable(String),
}

impl Origin {
    /// The variable to name in an error: the file's comes from `ORBIT_KAFKA_PROPERTIES_FILE`.
    fn variable(&self) -> &str {
        match self {
            Origin::Default => "ORBIT_KAFKA_BROKERS",
            Origin::File { .. } => PROPERTIES_FILE,
            Origin::Variable(name) => name,
        }
    }

    fn error(&self, message: impl fmt::Display) -> ConfigError {
        let message = match self {
            Origin::File { path, line } => format!("{} line {line}: {message}", path.display()),
            _ => message.to_string(),
        };
        ConfigError {
            name: self.variable().to_string(),
            message,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Variable(name) => write!(f, "{name}"),
        }
    }
}

/// One librdkafka property and where its value came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub value: String,
    pub origin: Origin,
}

impl Property {
    /// The value as it may be shown: secrets replaced by [`REDACTED`].
    pub fn shown(&self) -> &str {
        if is_secret(&self.name) {
            REDACTED
        } else {
            &self.value
        }
    }
}

impl fmt::Debug for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={} ({})", self.name, self.shown(), self.origin)
    }
}

/// The connection settings of every client of the stack's Kafka: one value per property, the
/// one that won.
#[derive(Clone, Default)]
pub struct KafkaConnection {
    properties: Vec<Property>,
}

impl fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.properties).finish()
    }
}

impl KafkaConnection {
    /// Reads the settings from this process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the settings from `vars` (name, value) as if they were the environment.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(name, value)| name.starts_with("ORBIT_KAFKA_") && !value.trim().is_empty())
            .collect();
        let mut connection = Self::default();
        connection.put("bootstrap.servers", DEFAULT_BROKERS, Origin::Default);
        if let Some(path) = vars.get(PROPERTIES_FILE) {
            let path = PathBuf::from(path.trim());
            let text = std::fs::read_to_string(&path).map_err(|err| ConfigError {
                name: PROPERTIES_FILE.into(),
                message: format!("cannot read {}: {err}", path.display()),
            })?;
            for (line, name, value) in parse_properties(&text) {
                let origin = Origin::File {
                    path: path.clone(),
                    line,
                };
                connection.put_from_file(&name, &value, origin)?;
            }
        }
        let mut prefixed: Vec<(&String, &String)> = vars
            .iter()
            .filter(|(name, _)| name.starts_with(PROPERTY_PREFIX))
            .collect();
        prefixed.sort();
        for (variable, value) in prefixed {
            let property = variable[PROPERTY_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            connection.put(&property, value, Origin::Variable(variable.clone()));
        }
        for &(variable, property, source) in NAMED {
            if let Some(raw) = vars.get(variable) {
                let value = named_value(variable, raw.trim(), source)?;
                connection.put(property, &value, Origin::Variable(variable.into()));
            }
        }
        connection.normalise()?;
        connection.check()?;
        Ok(connection)
    }

    /// Sets `name` (under its canonical name) to `value`, over any earlier value.
    fn put(&mut self, name: &str, value: &str, origin: Origin) {
        let name = canonical(name);
        self.properties.retain(|p| p.name != name);
        self.properties.push(Property {
            name: name.to_string(),
            value: value.to_string(),
            origin,
        });
    }

    /// A line of the properties file: Java-only settings are skipped, and a Java client's
    /// `sasl.jaas.config` becomes librdkafka's `sasl.username` and `sasl.password`.
    fn put_from_file(
        &mut self,
        name: &str,
        value: &str,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        if JAVA_ONLY_PREFIXES.iter().any(|p| name.starts_with(p)) {
            tracing::info!(property = name, at = %origin, "Java client setting skipped");
            return Ok(());
        }
        if name == "sasl.jaas.config" {
            let (username, password) = jaas_credentials(value).ok_or_else(|| {
                origin.error(
                    "sasl.jaas.config without username=\"...\" and password=\"...\" (only \
                     PlainLoginModule and ScramLoginModule translate to librdkafka's \
                     sasl.username and sasl.password)",
                )
            })?;
            self.put("sasl.username", &username, origin.clone());
            self.put("sasl.password", &password, origin);
            return Ok(());
        }
        self.put(name, value, origin);
        Ok(())
    }

    /// Writes `security.protocol` and `sasl.mechanisms` in librdkafka's spelling, wherever
    /// they came from, refusing values it has no use for.
    fn normalise(&mut self) -> Result<(), ConfigError> {
        for property in &mut self.properties {
            match property.name.as_str() {
                "security.protocol" => {
                    property.value = security_protocol(&property.value)
                        .map_err(|message| property.origin.error(message))?;
                }
                "sasl.mechanisms" => {
                    property.value = sasl_mechanism(&property.value)
                        .map_err(|message| property.origin.error(message))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Combinations librdkafka would accept and then quietly not use (SASL settings on a
    /// connection without SASL, TLS files on one without TLS), or fail on at the first
    /// connection; then every property through librdkafka's own checks.
    fn check(&self) -> Result<(), ConfigError> {
        let protocol = self.security_protocol();
        let protocol_origin = self.property("security.protocol").map_or(
            Origin::Variable("ORBIT_KAFKA_SECURITY_PROTOCOL".into()),
            |p| p.origin.clone(),
        );
        let sasl = protocol.starts_with("SASL_");
        let tls = protocol.ends_with("SSL");
        for property in &self.properties {
            let needs = if property.name.starts_with("sasl.") && !sasl {
                Some("SASL_PLAINTEXT or SASL_SSL")
            } else if property.name.starts_with("ssl.") && !tls {
                Some("SSL or SASL_SSL")
            } else {
                None
            };
            if let Some(needs) = needs {
                return Err(property.origin.error(format!(
                    "{} is set but security.protocol is {protocol}, which does not use it: set \
                     ORBIT_KAFKA_SECURITY_PROTOCOL to {needs}",
                    property.name
                )));
            }
        }
        if sasl {
            let mechanism = self.get("sasl.mechanisms").ok_or_else(|| {
                protocol_origin.error(format!(
                    "security.protocol {protocol} needs a SASL mechanism: set \
                     ORBIT_KAFKA_SASL_MECHANISM to one of {} (librdkafka's default, GSSAPI, is \
                     not built in)",
                    SASL_MECHANISMS.join(", ")
                ))
            })?;
            if self.get("sasl.username").is_none() {
                return Err(protocol_origin.error(format!(
                    "SASL {mechanism} needs a user name: set ORBIT_KAFKA_SASL_USERNAME"
                )));
            }
            if self.get("sasl.password").is_none() {
                return Err(protocol_origin.error(format!(
                    "SASL {mechanism} needs a password: set ORBIT_KAFKA_SASL_PASSWORD_FILE"
                )));
            }
        }
        let certificate = self
            .property("ssl.certificate.location")
            .or_else(|| self.property("ssl.certificate.pem"));
        let key = self
            .property("ssl.key.location")
            .or_else(|| self.property("ssl.key.pem"));
        match (certificate, key) {
            (Some(certificate), None) => {
                return Err(certificate.origin.error(format!(
                    "{} is set without the client certificate's key: set \
                     ORBIT_KAFKA_SSL_KEY_LOCATION",
                    certificate.name
                )))
            }
            (None, Some(key)) => {
                return Err(key.origin.error(format!(
                    "{} is set without the client certificate: set \
                     ORBIT_KAFKA_SSL_CERTIFICATE_LOCATION",
                    key.name
                )))
            }
            _ => {}
        }
        if let Err(err) = self.client_config().create_native_config() {
            return Err(self.config_error(err));
        }
        Ok(())
    }

    /// A librdkafka refusal of a property, told as the setting that holds it (with neither the
    /// value of a secret nor, for a secret, librdkafka's message, which quotes it).
    fn config_error(&self, err: KafkaError) -> ConfigError {
        match err {
            KafkaError::ClientConfig(_, description, key, _) => {
                let origin = self
                    .property(&key)
                    .map_or(Origin::Variable(PROPERTIES_FILE.into()), |p| {
                        p.origin.clone()
                    });
                let message = if is_secret(&key) {
                    format!("librdkafka refused the value of {key}")
                } else {
                    format!("librdkafka refused {key}: {description}")
                };
                origin.error(message)
            }
            other => ConfigError {
                name: PROPERTIES_FILE.into(),
                message: format!("librdkafka refused the settings: {other}"),
            },
        }
    }

    fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// The value of property `name` (canonical name), if anything set it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.property(canonical(name)).map(|p| p.value.as_str())
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        self.get("bootstrap.servers").unwrap_or(DEFAULT_BROKERS)
    }

    /// `security.protocol`, `PLAINTEXT` unless set.
    pub fn security_protocol(&self) -> &str {
        self.get("security.protocol").unwrap_or("PLAINTEXT")
    }

    /// Whether the connection is TLS (`SSL` or `SASL_SSL`).
    pub fn uses_tls(&self) -> bool {
        self.security_protocol().ends_with("SSL")
    }

    /// Every property that was set, with where it came from.
    pub fn properties(&self) -> &[Property] {
        &self.properties
    }

    /// The settings as they may be logged: `name=value (origin)`, secrets redacted.
    pub fn redacted(&self) -> String {
        let mut shown: Vec<String> = self.properties.iter().map(|p| format!("{p:?}")).collect();
        shown.sort();
        shown.join(", ")
    }

    /// A librdkafka configuration holding these settings, for any client.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for property in &self.properties {
            config.set(&property.name, &property.value);
        }
        config
    }

    /// TLS that verifies the broker with the system's CA certificates, and none found where
    /// OpenSSL distributions keep them: the broker's certificate cannot be verified (a
    /// container image without `ca-certificates`, say).
    pub fn system_ca_missing(&self) -> bool {
        let verifies = self
            .get("enable.ssl.certificate.verification")
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
        let own_ca = self.get("ssl.ca.location").is_some() || self.get("ssl.ca.pem").is_some();
        self.uses_tls()
            && verifies
            && !own_ca
            && !SYSTEM_CA_FILES.iter().any(|f| Path::new(f).exists())
    }
}

/// Where distributions keep the CA bundle (the files librdkafka probes).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, canonical)| canonical)
}

fn security_protocol(value: &str) -> Result<String, String> {
    let upper = value.trim().to_ascii_uppercase();
    if SECURITY_PROTOCOLS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "unknown security protocol {value:?}: one of {}",
            SECURITY_PROTOCOLS.join(", ")
        ))
    }
}

fn sasl_mechanism(value: &str) -> Result<String, String> {
    let upper = value.trim().to_ascii_uppercase();
    if SASL_MECHANISMS.contains(&upper.as_str()) {
        Ok(upper)
    } else if upper == "GSSAPI" {
        Err(
            "SASL mechanism GSSAPI (Kerberos) is not built into the bridge (its librdkafka has \
             no Cyrus SASL): use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                .into(),
        )
    } else if upper == "OAUTHBEARER" {
        Err(
            "SASL mechanism OAUTHBEARER needs a token provider the bridge does not have \
             (librdkafka's OIDC token fetch needs curl, which is not built in): use PLAIN, \
             SCRAM-SHA-256 or SCRAM-SHA-512"
                .into(),
        )
    } else {
        Err(format!(
            "unknown SASL mechanism {value:?}: one of {}",
            SASL_MECHANISMS.join(", ")
        ))
    }
}

/// A named variable's value as its property's.
fn named_value(variable: &str, value: &str, source: Source) -> Result<String, ConfigError> {
    let error = |message: String| ConfigError {
        name: variable.into(),
        message,
    };
    match source {
        Source::Value => Ok(value.to_string()),
        Source::SecurityProtocol => security_protocol(value).map_err(error),
        Source::SaslMechanism => sasl_mechanism(value).map_err(error),
        Source::Path => {
            if value != "probe" && !Path::new(value).exists() {
                return Err(error(format!("{value} does not exist")));
            }
            Ok(value.to_string())
        }
        Source::SecretFile => read_secret(Path::new(value)).map_err(error),
    }
}

/// A secret from a file (a mounted Kubernetes or Compose secret): its contents without the
/// trailing line break.
pub fn read_secret(path: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// The `key=value` lines of a Java properties file, each with the number of the line it starts
/// on: `#` and `!` comments, `=`, `:` or white space between key and value, a trailing `\`
/// continuing the line, and the escapes `\t`, `\n`, `\r`, `\f`, `\uXXXX` and `\<char>`. Values
/// are trimmed.
pub fn parse_properties(text: &str) -> Vec<(usize, String, String)> {
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let first = line.trim_start();
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = first.to_string();
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_entry(&logical);
        if !key.is_empty() {
            entries.push((index + 1, unescape(key), unescape(value.trim_end())));
        }
    }
    entries
}

/// An odd number of trailing backslashes: the last one continues the line.
fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

/// The raw key and value of a logical line: the key ends at the first unescaped `=`, `:` or
/// white space; one `=` or `:` and the white space around it separate it from the value.
fn split_entry(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut end = line.len();
    for (at, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            end = at;
            break;
        }
    }
    let key = &line[..end];
    let mut rest = line[end..].trim_start();
    if let Some(stripped) = rest.strip_prefix(['=', ':']) {
        rest = stripped.trim_start();
    }
    (key, rest)
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(decoded) => out.push(decoded),
                    None => {
                        out.push_str("\\u");
                        out.push_str(&hex);
                    }
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// `username` and `password` of a Java client's `sasl.jaas.config`
/// (`org.apache.kafka.common.security.plain.PlainLoginModule required username="k"
/// password="s";`).
fn jaas_credentials(config: &str) -> Option<(String, String)> {
    let option = |name: &str| -> Option<String> {
        let mut rest = config;
        loop {
            let at = rest.find(name)?;
            let before = rest[..at].chars().last();
            let after = rest[at + name.len()..].trim_start();
            rest = &rest[at + name.len()..];
            if before.is_some_and(|c| !c.is_whitespace()) {
                continue;
            }
            let Some(value) = after.strip_prefix('=') else {
                continue;
            };
            let value = value.trim_start();
            let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let body = &value[1..];
            let end = body.find(quote)?;
            return Some(body[..end].to_string());
        }
    };
    Some((option("username")?, option("password")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn scratch(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "orbit-kafka-connection-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("a scratch file");
        path
    }

    #[test]
    fn nothing_set_is_plaintext_to_the_local_broker() -> Result<(), ConfigError> {
        let connection = KafkaConnection::from_vars(vars(&[]))?;
        assert_eq!(connection.brokers(), DEFAULT_BROKERS);
        assert_eq!(connection.security_protocol(), "PLAINTEXT");
        assert!(!connection.uses_tls());
        Ok(())
    }

    #[test]
    fn a_confluent_cloud_file_is_read_and_the_environment_wins_over_it() -> Result<(), ConfigError>
    {
        let file = scratch(
            "client.properties",
            "# Required connection configs for Kafka producer, consumer, and admin\n\
             bootstrap.servers=pkc-1.europe-west1.gcp.confluent.cloud:9092\n\
             security.protocol=SASL_SSL\n\
             sasl.mechanisms=PLAIN\n\
             sasl.username=KEY1\n\
             sasl.password=SECRET1\n\
             \n\
             ! Best practice for higher availability in librdkafka clients prior to 1.7\n\
             session.timeout.ms = 45000\n\
             schema.registry.url=https://psrc-1.europe-west1.gcp.confluent.cloud\n\
             basic.auth.user.info={{ SR_API_KEY }}:{{ SR_API_SECRET }}\n\
             client.id : orbit-\\\n    bridge\n",
        );
        let password = scratch("password", "SECRET2\n");
        let connection = KafkaConnection::from_vars(vars(&[
            (PROPERTIES_FILE, &file.display().to_string()),
            ("ORBIT_KAFKA_SASL_USERNAME", "KEY2"),
            (
                "ORBIT_KAFKA_SASL_PASSWORD_FILE",
                &password.display().to_string(),
            ),
            ("ORBIT_KAFKA_PROP_SESSION_TIMEOUT_MS", "30000"),
        ]))?;
        assert_eq!(
            connection.brokers(),
            "pkc-1.europe-west1.gcp.confluent.cloud:9092"
        );
        assert_eq!(connection.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(connection.get("sasl.username"), Some("KEY2"));
        assert_eq!(connection.get("sasl.password"), Some("SECRET2"));
        assert_eq!(connection.get("session.timeout.ms"), Some("30000"));
        assert_eq!(connection.get("client.id"), Some("orbit-bridge"));
        assert_eq!(connection.get("schema.registry.url"), None);
        let username = connection
            .property("sasl.username")
            .map(|p| p.origin.clone());
        assert_eq!(
            username,
            Some(Origin::Variable("ORBIT_KAFKA_SASL_USERNAME".into()))
        );
        Ok(())
    }

    #[test]
    fn explicit_brokers_win_over_the_file_and_the_file_over_the_default() -> Result<(), ConfigError>
    {
        let file = scratch("brokers.properties", "metadata.broker.list=file:9092\n");
        let from_file =
            KafkaConnection::from_vars(vars(&[(PROPERTIES_FILE, &file.display().to_string())]))?;
        assert_eq!(from_file.brokers(), "file:9092");
        let explicit = KafkaConnection::from_vars(vars(&[
            (PROPERTIES_FILE, &file.display().to_string()),
            ("ORBIT_KAFKA_BROKERS", "env:9093"),
        ]))?;
        assert_eq!(explicit.brokers(), "env:9093");
        assert_eq!(explicit.client_config().get("metadata.broker.list"), None);
        Ok(())
    }

    #[test]
    fn a_java_jaas_line_becomes_a_user_name_and_password() -> Result<(), ConfigError> {
        let file = scratch(
            "java.properties",
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"alice\" password='s3cr=t';\nclient.dns.lookup=use_all_dns_ips\n",
        );
        let connection =
            KafkaConnection::from_vars(vars(&[(PROPERTIES_FILE, &file.display().to_string())]))?;
        assert_eq!(connection.get("sasl.username"), Some("alice"));
        assert_eq!(connection.get("sasl.password"), Some("s3cr=t"));
        assert_eq!(connection.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        Ok(())
    }

    #[test]
    fn the_password_file_loses_its_line_break_only() -> Result<(), String> {
        let path = scratch("pw", " p@ss word \r\n");
        assert_eq!(read_secret(&path)?, " p@ss word ");
        let empty = scratch("empty", "\n");
        assert!(read_secret(&empty).is_err_and(|e| e.contains("is empty")));
        Ok(())
    }

    #[test]
    fn secrets_are_redacted_wherever_settings_are_shown() -> Result<(), ConfigError> {
        let password = scratch("redact-pw", "hunter2-password\n");
        let key_password = scratch("redact-key-pw", "key-pass-123\n");
        let connection = KafkaConnection::from_vars(vars(&[
            ("ORBIT_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("ORBIT_KAFKA_SASL_MECHANISM", "scram-sha-256"),
            ("ORBIT_KAFKA_SASL_USERNAME", "alice"),
            (
                "ORBIT_KAFKA_SASL_PASSWORD_FILE",
                &password.display().to_string(),
            ),
            (
                "ORBIT_KAFKA_SSL_KEY_PASSWORD_FILE",
                &key_password.display().to_string(),
            ),
            ("ORBIT_KAFKA_PROP_SSL_KEYSTORE_PASSWORD", "keystore-secret"),
        ]))?;
        let shown = format!("{} {connection:?}", connection.redacted());
        for secret in ["hunter2-password", "key-pass-123", "keystore-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("sasl.password=[redacted] (ORBIT_KAFKA_SASL_PASSWORD_FILE)"));
        assert!(shown.contains("sasl.username=alice"), "{shown}");
        assert_eq!(connection.security_protocol(), "SASL_SSL");
        assert_eq!(connection.get("sasl.mechanisms"), Some("SCRAM-SHA-256"));
        for name in [
            "ssl.key.pem",
            "ssl.keystore.password",
            "sasl.jaas.config",
            "x.secret",
        ] {
            assert!(is_secret(name), "{name}");
        }
        assert!(!is_secret("sasl.username"));
        Ok(())
    }

    fn refused(pairs: &[(&str, &str)]) -> ConfigError {
        match KafkaConnection::from_vars(vars(pairs)) {
            Ok(connection) => panic!("accepted: {connection:?}"),
            Err(err) => err,
        }
    }

    #[test]
    fn a_bad_setting_is_refused_naming_its_variable() {
        let err = refused(&[("ORBIT_KAFKA_SECURITY_PROTOCOL", "TLS")]);
        assert_eq!(err.name, "ORBIT_KAFKA_SECURITY_PROTOCOL");
        assert!(err.message.contains("unknown security protocol"), "{err}");

        let err = refused(&[
            ("ORBIT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("ORBIT_KAFKA_SASL_MECHANISM", "GSSAPI"),
        ]);
        assert_eq!(err.name, "ORBIT_KAFKA_SASL_MECHANISM");
        assert!(err.message.contains("Kerberos"), "{err}");

        let err = refused(&[
            ("ORBIT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("ORBIT_KAFKA_SASL_MECHANISM", "oauthbearer"),
        ]);
        assert!(err.message.contains("curl"), "{err}");

        let err = refused(&[
            ("ORBIT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("ORBIT_KAFKA_SASL_MECHANISM", "PLAIN"),
            ("ORBIT_KAFKA_SASL_USERNAME", "key"),
            (
                "ORBIT_KAFKA_SASL_PASSWORD_FILE",
                "/nonexistent/orbit/kafka-password",
            ),
        ]);
        assert_eq!(err.name, "ORBIT_KAFKA_SASL_PASSWORD_FILE");
        assert!(err.message.contains("cannot read"), "{err}");

        let err = refused(&[
            ("ORBIT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("ORBIT_KAFKA_SASL_MECHANISM", "PLAIN"),
            ("ORBIT_KAFKA_SASL_USERNAME", "key"),
        ]);
        assert!(
            err.message.contains("ORBIT_KAFKA_SASL_PASSWORD_FILE"),
            "{err}"
        );

        let err = refused(&[("ORBIT_KAFKA_SASL_USERNAME", "key")]);
        assert_eq!(err.name, "ORBIT_KAFKA_SASL_USERNAME");
        assert!(
            err.message.contains("security.protocol is PLAINTEXT"),
            "{err}"
        );

        let err = refused(&[("ORBIT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")]);
        assert!(err.message.contains("ORBIT_KAFKA_SASL_MECHANISM"), "{err}");

        let err = refused(&[
            ("ORBIT_KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("ORBIT_KAFKA_SSL_CA_LOCATION", "/nonexistent/orbit/ca.pem"),
        ]);
        assert_eq!(err.name, "ORBIT_KAFKA_SSL_CA_LOCATION");

        let err = refused(&[("ORBIT_KAFKA_PROP_NO_SUCH_PROPERTY", "1")]);
        assert_eq!(err.name, "ORBIT_KAFKA_PROP_NO_SUCH_PROPERTY");
        assert!(err.message.contains("no.such.property"), "{err}");
    }

    #[test]
    fn a_bad_line_of_the_file_is_named_by_its_number() {
        let file = scratch(
            "bad.properties",
            "# ok\nsecurity.protocol=SSL\nssl.ca.location=probe\nlinger.ms=soon\n",
        );
        let err = refused(&[(PROPERTIES_FILE, &file.display().to_string())]);
        assert_eq!(err.name, PROPERTIES_FILE);
        assert!(err.message.contains("line 4"), "{err}");
        assert!(err.message.contains("linger.ms"), "{err}");
    }

    /// TLS, SCRAM and PLAIN are in the librdkafka the bridge links (OpenSSL, no Cyrus SASL): a
    /// client with each mechanism can be made.
    #[test]
    fn the_bridge_links_tls_and_the_sasl_mechanisms_it_offers() -> Result<(), KafkaError> {
        let native = ClientConfig::new().create_native_config()?;
        let features = native.get("builtin.features")?;
        for feature in ["ssl", "sasl_plain", "sasl_scram"] {
            assert!(features.split(',').any(|f| f == feature), "{features}");
        }
        assert!(
            !features.split(',').any(|f| f == "sasl_gssapi"),
            "{features}"
        );
        for mechanism in SASL_MECHANISMS {
            let producer: Result<rdkafka::producer::BaseProducer, _> = ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanisms", *mechanism)
                .set("sasl.username", "u")
                .set("sasl.password", "p")
                .create();
            assert!(producer.is_ok(), "{mechanism}: {:?}", producer.err());
        }
        Ok(())
    }
}
