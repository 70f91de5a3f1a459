//! `meshctl config`: any component's configuration checked, printed or documented from one tool.
//!
//! `check`, `print-config` and `print-defaults` run the very code of the component's own
//! binary (`mesh_core::cli::execute`) on the same sources (the same list keys), so
//! `meshctl config check --component gateway-router --config router.toml` and
//! `gateway-router --config router.toml check` agree. `reference` renders
//! docs/configuration.md.

use clap::{Args, Subcommand};
use mesh_core::cli::{ConfigCommand, execute_or_exit};
use mesh_core::config::Sources;
use mesh_core::reference::{self, Component};

#[derive(Args, Debug)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load and validate a component's configuration: `ok`, or exit 1 naming the bad key.
    Check(Target),
    /// A component's effective configuration as TOML (defaults, file, environment), secrets redacted.
    PrintConfig(Target),
    /// A component's built-in defaults as TOML.
    PrintDefaults(Target),
    /// The configuration reference of every component, as markdown (docs/configuration.md).
    Reference,
}

#[derive(Args, Debug)]
struct Target {
    /// The component, by its binary's name.
    #[arg(long, short = 'c', value_parser = clap::builder::PossibleValuesParser::new(names()))]
    component: String,
    #[command(flatten)]
    config: mesh_core::cli::ConfigArgs,
}

/// One component: its binary's name, what it is, its list keys, and its config type's code.
struct Entry {
    name: &'static str,
    about: &'static str,
    list_keys: &'static [&'static str],
    execute: fn(&str, ConfigCommand, &Sources),
    reference: fn(&'static str, &'static str, &[String]) -> Component,
}

macro_rules! entry {
    ($name:literal, $about:literal, $config:ty, $list_keys:expr) => {
        Entry {
            name: $name,
            about: $about,
            list_keys: $list_keys,
            execute: execute_or_exit::<$config>,
            reference: Component::of::<$config>,
        }
    };
}

/// Every component, in the order of the mesh: the router, the gateways, the services.
fn entries() -> [Entry; 9] {
    [
        entry!(
            "gateway-router",
            "The front router: classifies each request to a gateway pool, balances, retries and ejects instances.",
            gateway_router::Config,
            gateway_router::config::LIST_KEYS
        ),
        entry!(
            "identity-gateway",
            "The HTTP gateway of the identity domain (`/v1/auth`, `/v1/users`, `/v1/quota`, JWKS).",
            gateway::Config,
            gateway::config::LIST_KEYS
        ),
        entry!(
            "business-gateway",
            "The HTTP gateway of the business domain (`/v1/orders`, `/v1/articles`, `/v1/analytics`, `/v1/dashboard`); the same keys as the identity gateway, with business defaults.",
            gateway::BusinessConfig,
            gateway::config::LIST_KEYS
        ),
        entry!(
            "auth-service",
            "gRPC: accounts, sessions, access tokens and API keys.",
            auth_service::Config,
            auth_service::config::LIST_KEYS
        ),
        entry!("user-service", "gRPC: user profiles.", user_service::Config, user_service::config::LIST_KEYS),
        entry!(
            "quota-service",
            "gRPC: plans and each principal's usage.",
            quota_service::Config,
            quota_service::config::LIST_KEYS
        ),
        entry!(
            "orders-service",
            "gRPC: orders, their events, and the queue the gateways fill during an outage.",
            orders_service::Config,
            orders_service::config::LIST_KEYS
        ),
        entry!(
            "articles-service",
            "gRPC: the catalogue, stock and reservations.",
            articles_service::Config,
            articles_service::config::LIST_KEYS
        ),
        entry!(
            "analytics-service",
            "gRPC: event counts and live events.",
            analytics_service::Config,
            analytics_service::config::LIST_KEYS
        ),
    ]
}

fn names() -> Vec<&'static str> {
    entries().iter().map(|e| e.name).collect()
}

/// The reference of every component; an error names each key the code leaves undocumented.
pub(crate) fn render_reference() -> anyhow::Result<String> {
    let components: Vec<Component> = entries()
        .iter()
        .map(|e| {
            (e.reference)(e.name, e.about, &e.list_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>())
        })
        .collect();
    reference::render(&components).map_err(|keys| {
        anyhow::anyhow!("keys without a doc comment (their meaning):\n  {}", keys.join("\n  "))
    })
}

pub(crate) fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let (command, target) = match args.command {
        Command::Check(t) => (ConfigCommand::Check, t),
        Command::PrintConfig(t) => (ConfigCommand::PrintConfig, t),
        Command::PrintDefaults(t) => (ConfigCommand::PrintDefaults, t),
        Command::Reference => {
            print!("{}", render_reference()?);
            return Ok(());
        }
    };
    let entry = entries().into_iter().find(|e| e.name == target.component).expect("clap checked the name");
    let sources = target.config.apply(Sources::from_process().with_list_keys(entry.list_keys));
    (entry.execute)(entry.name, command, &sources);
    Ok(())
}
