//! Typed configuration: built-in defaults, then an optional TOML file, then environment overrides.
//!
//! Environment variables use the `MESH_` prefix and `__` between nested keys:
//! `MESH_LISTEN=0.0.0.0:50051`, `MESH_STORE__REDIS_URL=redis://redis:6379`. A few conventional
//! names are honoured too, below the `MESH_` ones: `REDIS_URL` sets `store.redis_url` for any
//! process whose config has a store. Lists are comma separated.
//!
//! [`Sources`] takes the environment as a map so tests feed it directly (no `set_var`).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Serialize, de::DeserializeOwned};

/// Conventional variables and the key each sets, applied when `MESH_<key>` itself is not set:
/// (variable, the top-level section that must exist, the `MESH_` variable it stands for).
pub const ALIASES: &[(&str, &str, &str)] = &[("REDIS_URL", "store", "MESH_STORE__REDIS_URL")];

/// The `MESH_` variable that sets the dotted `key`: `store.redis_url` is `MESH_STORE__REDIS_URL`.
pub fn env_name(key: &str) -> String {
    format!("MESH_{}", key.replace('.', "__").to_uppercase())
}

/// A component's own checks of a loaded configuration, beyond what its types enforce (the
/// router's rules must name configured pools, auth's TTLs must be ordered, ...). `check` and
/// `serve` both run it. The default accepts everything.
pub trait Validate {
    /// An error naming the key at fault.
    fn validate(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The schema of a duration field (`#[serde(with = "humantime_serde")]`): a humantime string
/// such as `250ms`, `5s`, `1h 30m`. Fields say so with
/// `#[schemars(with = "mesh_core::config::HumanDuration")]`.
pub struct HumanDuration;

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "duration" })
    }
}

/// What [`redacted`] writes instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a key holds a secret: its name says key material, a password, a secret or a token.
/// The one list of them; `print-config` and anything else that shows a configuration use it.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "private_key_pem", "token"].iter().any(|word| key.contains(word))
        && !key.ends_with("_ttl")
        && !key.ends_with("_entries")
        && !key.ends_with("_file")
}

/// A serialised configuration with its secrets replaced by [`REDACTED`]: the string values of
/// [secret keys](is_secret_key), and the password of any URL (`redis://:pw@host` becomes
/// `redis://:<redacted>@host`). Tables under a secret-looking name (e.g. the password hash's
/// cost) are walked, not hidden.
pub fn redacted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn walk(value: Value, secret: bool) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let s = is_secret_key(&k);
                        (k, walk(v, s))
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| walk(v, secret)).collect()),
            Value::String(_) if secret => Value::String(REDACTED.to_owned()),
            Value::String(s) => Value::String(redact_url_password(&s)),
            other => other,
        }
    }
    walk(value, false)
}

/// `scheme://user:password@host...` with the password redacted; anything else unchanged.
fn redact_url_password(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else { return value.to_owned() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return value.to_owned() };
    let Some(colon) = rest[..at].find(':') else { return value.to_owned() };
    format!("{scheme}://{}:{REDACTED}{}", &rest[..colon], &rest[at..])
}

/// Why a configuration could not be loaded. The message names the file or variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// Where a process's configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// A TOML file; a missing file is an error when it was named explicitly.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them; only `MESH_*` and the aliases are read).
    pub env: HashMap<String, String>,
    /// Keys whose environment value is a comma-separated list (e.g. `services.auth.endpoints`).
    pub list_keys: Vec<String>,
}

impl Sources {
    /// The process's real environment and the file named by `MESH_CONFIG`, if any.
    pub fn from_process() -> Self {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = env.get("MESH_CONFIG").map(PathBuf::from);
        Self { file, env, list_keys: Vec::new() }
    }

    /// A given map as the environment; no file.
    pub fn from_env<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            file: None,
            env: vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            list_keys: Vec::new(),
        }
    }

    pub fn with_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn with_list_key(mut self, key: impl Into<String>) -> Self {
        self.list_keys.push(key.into());
        self
    }

    /// [`with_list_key`](Self::with_list_key) for each of `keys`.
    pub fn with_list_keys(self, keys: &[&str]) -> Self {
        keys.iter().fold(self, |s, k| s.with_list_key(*k))
    }

    /// Builds `T` from its `Default`, the file, then the environment.
    pub fn load<T: DeserializeOwned + Serialize + Default>(&self) -> Result<T, ConfigError> {
        let defaults = T::default();
        let top_level = serde_json::to_value(&defaults).map_err(|e| ConfigError(e.to_string()))?;

        let mut env: config::Map<String, String> = self
            .env
            .iter()
            .filter(|(k, _)| {
                k.starts_with("MESH_") && k.as_str() != "MESH_CONFIG" && k.as_str() != "MESH_LOG"
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (alias, section, key) in ALIASES {
            if let Some(value) = self.env.get(*alias)
                && top_level.get(section).is_some()
                && !env.contains_key(*key)
            {
                env.insert((*key).to_owned(), value.clone());
            }
        }

        let mut environment = config::Environment::with_prefix("MESH")
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(env));
        if !self.list_keys.is_empty() {
            environment = environment.list_separator(",");
            for key in &self.list_keys {
                environment = environment.with_list_parse_key(key);
            }
        }

        let mut builder = config::Config::builder()
            .add_source(config::Config::try_from(&defaults).map_err(|e| ConfigError(e.to_string()))?);
        if let Some(file) = &self.file {
            builder = builder.add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        builder
            .add_source(environment)
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::store::StoreConfig;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Example {
        listen: String,
        replicas: Vec<String>,
        store: StoreConfig,
        #[serde(with = "humantime_serde")]
        deadline: Duration,
    }

    impl Default for Example {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:50051".into(),
                replicas: vec!["a".into()],
                store: StoreConfig::default(),
                deadline: Duration::from_secs(5),
            }
        }
    }

    #[test]
    fn defaults_work_without_any_source() {
        let cfg: Example = Sources::default().load().unwrap();
        assert_eq!(cfg, Example::default());
    }

    #[test]
    fn mesh_variables_override_nested_keys_lists_and_durations() {
        let cfg: Example = Sources::from_env([
            ("MESH_LISTEN", "0.0.0.0:1"),
            ("MESH_STORE__KEY_PREFIX", "t:"),
            ("MESH_DEADLINE", "250ms"),
            ("MESH_REPLICAS", "x:1,y:2"),
            ("UNRELATED", "ignored"),
        ])
        .with_list_key("replicas")
        .load()
        .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:1");
        assert_eq!(cfg.store.key_prefix, "t:");
        assert_eq!(cfg.deadline, Duration::from_millis(250));
        assert_eq!(cfg.replicas, vec!["x:1".to_string(), "y:2".to_string()]);
    }

    #[test]
    fn redis_url_alias_applies_below_the_mesh_variable() {
        let cfg: Example = Sources::from_env([("REDIS_URL", "redis://a:1")]).load().unwrap();
        assert_eq!(cfg.store.redis_url.as_deref(), Some("redis://a:1"));
        let cfg: Example =
            Sources::from_env([("REDIS_URL", "redis://a:1"), ("MESH_STORE__REDIS_URL", "redis://b:2")])
                .load()
                .unwrap();
        assert_eq!(cfg.store.redis_url.as_deref(), Some("redis://b:2"));
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("mesh-config-{}", crate::ids::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "listen = \"10.0.0.1:9\"\ndeadline = \"1s\"\n").unwrap();
        let cfg: Example = Sources::from_env([("MESH_DEADLINE", "2s")]).with_file(&file).load().unwrap();
        assert_eq!(cfg.listen, "10.0.0.1:9");
        assert_eq!(cfg.deadline, Duration::from_secs(2));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let cfg = serde_json::json!({
            "store": { "redis_url": "redis://:hunter2@redis:6379/0", "key_prefix": "mesh:" },
            "signing_keys": [{ "kid": "k1", "private_key_pem": "-----BEGIN PRIVATE KEY-----x" }],
            "password_hash": { "memory_kib": 19456 },
            "token_cache_entries": 100,
            "plain": "redis://redis:6379",
        });
        let out = redacted(cfg).to_string();
        assert!(!out.contains("hunter2") && !out.contains("BEGIN"), "{out}");
        assert!(out.contains("redis://:<redacted>@redis:6379/0"), "{out}");
        assert!(
            out.contains("\"kid\":\"k1\"") && out.contains("19456") && out.contains("redis://redis:6379")
        );
        assert!(out.contains("\"token_cache_entries\":100"), "{out}");
        assert_eq!(env_name("store.redis_url"), "MESH_STORE__REDIS_URL");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_their_name() {
        let err = Sources::from_env([("MESH_LISTNE", "x")]).load::<Example>().unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        let err = Sources::from_env([("MESH_DEADLINE", "soon")]).load::<Example>().unwrap_err();
        assert!(err.to_string().contains("deadline") || err.to_string().contains("soon"), "{err}");
    }
}
