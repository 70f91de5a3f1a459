//! The command line every server binary answers, declared once.
//!
//! ```text
//! <binary> [--config FILE]                  serve (what the binary did before it had a CLI)
//! <binary> [--config FILE] check            load and validate the configuration, print `ok`
//! <binary> [--config FILE] print-config     the effective configuration as TOML, secrets redacted
//! <binary> print-defaults                   the built-in defaults as TOML
//! <binary> --help | --version
//! ```
//!
//! `--config FILE` is `MESH_CONFIG=FILE`; when both are given the flag wins. The `MESH_*`
//! variables apply on top of the file in every mode, so `check` and `print-config` judge exactly
//! what `serve` would run. None of the subcommands binds a port or starts telemetry.
//!
//! `meshctl config` runs the same [`execute`] for any component, so an operator validates every
//! component's file from one tool.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::{Serialize, de::DeserializeOwned};

use crate::config::{Sources, Validate};

/// A binary's name and version, as `--version` prints them. Build it with [`binary!`](crate::binary)
/// so the version is the calling crate's.
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    pub name: &'static str,
    pub version: &'static str,
}

/// The [`Binary`] of the calling crate: `mesh_core::binary!("auth-service")`.
#[macro_export]
macro_rules! binary {
    ($name:literal) => {
        $crate::cli::Binary { name: $name, version: env!("CARGO_PKG_VERSION") }
    };
}

/// The arguments of a server binary.
#[derive(Parser, Debug)]
#[command(disable_help_subcommand = true)]
pub struct ServerCli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Without a subcommand the component serves.
    #[command(subcommand)]
    pub command: Option<ConfigCommand>,
}

/// Where the configuration file is.
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML file read between the built-in defaults and the `MESH_*` environment variables. The
    /// same as `MESH_CONFIG=FILE`; this flag wins over it.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    /// `sources` with the file named by `--config`, when given.
    pub fn apply(&self, sources: Sources) -> Sources {
        match &self.config {
            Some(file) => sources.with_file(file),
            None => sources,
        }
    }
}

/// What to do with a configuration instead of serving it.
#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigCommand {
    /// Load and validate the configuration (defaults, file, environment), print `ok` and exit 0;
    /// or exit 1 naming the bad key. Serves nothing, binds nothing.
    Check,
    /// Print the effective configuration (defaults, then the file, then the environment) as
    /// TOML, with secrets redacted.
    PrintConfig,
    /// Print the built-in defaults as TOML.
    PrintDefaults,
}

/// The server CLI of `binary`, parsed from the process's arguments. `--help`, `--version` and a
/// usage error print and exit here, before anything is loaded or bound.
pub fn parse(binary: Binary) -> ServerCli {
    let command = ServerCli::command()
        .name(binary.name)
        .bin_name(binary.name)
        .version(binary.version)
        .about(format!("{}: one component of the mesh. Without a subcommand it serves.", binary.name))
        .after_help(
            "Configuration: built-in defaults, then the TOML file (--config or MESH_CONFIG), then \
             MESH_* environment variables (MESH_A__B sets a.b). Every key: docs/configuration.md.",
        );
    let matches = command.get_matches();
    ServerCli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs `command` on the configuration `C` read from `sources`, printing to stdout.
pub fn execute<C>(command: ConfigCommand, sources: &Sources) -> anyhow::Result<()>
where
    C: DeserializeOwned + Serialize + Default + Validate,
{
    let out = match command {
        ConfigCommand::Check => {
            let cfg: C = sources.load()?;
            cfg.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e:#}"))?;
            "ok\n".to_owned()
        }
        ConfigCommand::PrintConfig => {
            let cfg: C = sources.load()?;
            to_toml(crate::config::redacted(serde_json::to_value(&cfg)?))?
        }
        ConfigCommand::PrintDefaults => to_toml(serde_json::to_value(C::default())?)?,
    };
    print!("{out}");
    Ok(())
}

/// [`execute`] as a command's whole run: on error, prints `<name>: <why>` (no backtrace: it is an
/// answer, not a crash) and exits 1.
pub fn execute_or_exit<C>(name: &str, command: ConfigCommand, sources: &Sources)
where
    C: DeserializeOwned + Serialize + Default + Validate,
{
    if let Err(e) = execute::<C>(command, sources) {
        eprintln!("{name}: {e:#}");
        std::process::exit(1);
    }
}

/// A serialised configuration as TOML. Unset optional keys (`null`) are left out, as TOML has no
/// null and an absent key is what loads them unset.
pub fn to_toml(value: serde_json::Value) -> anyhow::Result<String> {
    fn strip_nulls(value: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match value {
            Value::Null => None,
            Value::Object(map) => {
                Some(Value::Object(map.into_iter().filter_map(|(k, v)| Some((k, strip_nulls(v)?))).collect()))
            }
            Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(strip_nulls).collect())),
            Value::Number(n) if n.is_f64() => {
                Some(Value::from(shortest_float(n.as_f64().unwrap_or_default())))
            }
            other => Some(other),
        }
    }
    let value = strip_nulls(value).unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    let table: toml::Table = serde_json::from_value(value)?;
    Ok(toml::to_string(&table)?)
}

/// An `f32` field's value as written: 0.2 as an `f32` serialises as 0.20000000298023224; a value
/// an `f32` holds exactly is given as the shortest decimal that reads back as that `f32`.
pub fn shortest_float(f: f64) -> f64 {
    let narrow = f as f32;
    if f64::from(narrow) == f { narrow.to_string().parse().unwrap_or(f) } else { f }
}
