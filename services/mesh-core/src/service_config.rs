//! The head every gRPC service's configuration shares, declared once.
//!
//! Each service's `Config` is one flat struct with `#[serde(deny_unknown_fields, default)]`, so a
//! misspelt key or `MESH_` variable is refused at start rather than silently ignored. serde's
//! `flatten` would share the head as a struct of its own, but it does not mix with
//! `deny_unknown_fields` (a flattened struct sees every key as unknown), so the head is a macro
//! instead: [`service_config!`](crate::service_config) writes the shared fields (`listen`,
//! `admin_listen`, `admin_faults`, `server`, `store`) with their documentation and defaults, the service's own
//! fields after them, `Default`, and [`Listens`](crate::process::Listens).
//!
//! The calling crate needs `serde` (with `derive`) and `schemars` as dependencies, as every
//! service has; a duration field says `#[schemars(with = "mesh_core::config::HumanDuration")]`
//! beside its `#[serde(with = "humantime_serde")]`, and the service implements
//! [`Validate`](crate::config::Validate) (with its own checks, or none).

/// Declares a service's `Config`: the shared head, then the service's own fields, each written
/// `name: Type = default`.
///
/// ```
/// mesh_core::service_config! {
///     /// Configuration of the example service.
///     pub struct Config {
///         listen: 50099,
///         admin_listen: 9099,
///         /// Greeting sent to every caller. Default: `hello`.
///         pub greeting: String = "hello".into(),
///     }
/// }
///
/// let cfg = Config::default();
/// assert_eq!(cfg.listen.port(), 50099);
/// assert_eq!(cfg.greeting, "hello");
/// ```
#[macro_export]
macro_rules! service_config {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            listen: $port:literal,
            admin_listen: $admin_port:literal
            $(,
                $(#[$field_meta:meta])*
                $field_vis:vis $field:ident : $ty:ty = $default:expr
            )*
            $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, ::serde::Deserialize, ::serde::Serialize, ::schemars::JsonSchema)]
        #[serde(deny_unknown_fields, default)]
        $vis struct $name {
            #[doc = concat!("gRPC listener. Default: `127.0.0.1:", stringify!($port), "`.")]
            pub listen: ::std::net::SocketAddr,
            #[doc = concat!(
                "Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`). Default: `127.0.0.1:",
                stringify!($admin_port),
                "`."
            )]
            pub admin_listen: ::std::net::SocketAddr,
            /// Serve `/fault` on the admin listener, through which `meshctl chaos` injects
            /// latency and errors into this process's calls (docs/chaos.md). A test instrument:
            /// never on in production. Default: false.
            pub admin_faults: bool,
            /// The gRPC server: the bound on one call, and how it drains.
            pub server: $crate::grpc::ServerConfig,
            /// Where the service's state lives; every replica must share it. Default: memory (one
            /// process only).
            pub store: $crate::store::StoreConfig,
            $(
                $(#[$field_meta])*
                $field_vis $field: $ty,
            )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self {
                    listen: ([127, 0, 0, 1], $port).into(),
                    admin_listen: ([127, 0, 0, 1], $admin_port).into(),
                    admin_faults: false,
                    server: ::std::default::Default::default(),
                    store: ::std::default::Default::default(),
                    $($field: $default,)*
                }
            }
        }

        impl $crate::process::Listens for $name {
            fn listen(&self) -> ::std::net::SocketAddr {
                self.listen
            }

            fn admin_listen(&self) -> ::std::net::SocketAddr {
                self.admin_listen
            }

            fn store(&self) -> ::std::option::Option<&$crate::store::StoreConfig> {
                ::std::option::Option::Some(&self.store)
            }

            fn admin_faults(&self) -> bool {
                self.admin_faults
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Sources;
    use crate::process::Listens;

    crate::service_config! {
        /// A service with one field of its own.
        pub(crate) struct Head {
            listen: 50099,
            admin_listen: 9099,
            /// A duration, as the services write theirs.
            #[serde(with = "humantime_serde")]
            #[schemars(with = "crate::config::HumanDuration")]
            pub(crate) ttl: Duration = Duration::from_secs(60),
        }
    }

    crate::service_config! {
        pub(crate) struct HeadOnly {
            listen: 50098,
            admin_listen: 9098,
        }
    }

    #[test]
    fn the_head_has_its_ports_and_the_shared_defaults() {
        let cfg = Head::default();
        assert_eq!((cfg.listen(), cfg.admin_listen()), (cfg.listen, cfg.admin_listen));
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:50099");
        assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:9099");
        assert_eq!(cfg.store, crate::StoreConfig::default());
        assert_eq!(cfg.server.request_timeout, crate::grpc::ServerConfig::default().request_timeout);
        assert_eq!(cfg.ttl, Duration::from_secs(60));
        assert_eq!(HeadOnly::default().listen.port(), 50098);
    }

    #[test]
    fn every_key_loads_from_the_environment_and_unknown_ones_are_refused() {
        let cfg: Head = Sources::from_env([
            ("MESH_LISTEN", "0.0.0.0:7000"),
            ("MESH_ADMIN_LISTEN", "0.0.0.0:7001"),
            ("MESH_SERVER__DRAIN_GRACE", "2s"),
            ("MESH_SERVER__REFLECTION", "false"),
            ("REDIS_URL", "redis://r:6379"),
            ("MESH_TTL", "5m"),
        ])
        .load()
        .unwrap();
        assert_eq!((cfg.listen.port(), cfg.admin_listen.port()), (7000, 7001));
        assert_eq!(cfg.server.drain_grace, Duration::from_secs(2));
        assert!(!cfg.server.reflection);
        assert_eq!(cfg.store.redis_url.as_deref(), Some("redis://r:6379"));
        assert_eq!(cfg.ttl, Duration::from_secs(300));
        assert!(Sources::from_env([("MESH_LISTN", "x")]).load::<Head>().is_err());
        assert!(Sources::from_env([("MESH_TTL", "5m")]).load::<HeadOnly>().is_err());
    }
}
