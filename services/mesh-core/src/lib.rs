//! What every process of the mesh shares, so that each service is only its own behaviour.
//!
//! # Layout
//! - [`cli`]: the command line of every server binary (`check`, `print-config`, `print-defaults`).
//! - [`reference`]: docs/configuration.md, rendered from the config structs' schemas.
//! - [`config`]: typed configuration from defaults, a TOML file and `MESH_` environment overrides.
//! - [`telemetry`]: tracing (JSON logs off a terminal), OTLP trace export, the Prometheus recorder.
//! - [`trace`]: W3C trace context extracted from and injected into HTTP and gRPC.
//! - [`admin`]: the admin HTTP server: `/healthz`, `/readyz`, `/metrics`.
//! - [`breaker`]: the circuit breaker of each called service.
//! - [`client`]: gRPC channels balanced over a service's replicas.
//! - [`shutdown`]: SIGTERM/SIGINT as a future, and a drain trigger shared by a process's parts.
//! - [`store`]: the [`Store`] every service keeps its state in: Redis, or memory for the embedded default.
//! - [`contracts`]: rules several components check (ids of requests and idempotency, order lines).
//! - [`error`]: domain errors and their one mapping to `tonic::Status`.
//! - [`fault`]: the one failure model: which side failed, timed out or not, where to retry.
//! - [`fault_inject`]: chaos faults (latency, errors) set on the admin listener, off unless enabled.
//! - [`grpc`]: serving a tonic router with `grpc.health.v1`, server reflection and graceful drain.
//! - [`grpc_metrics`]: request count and latency of every gRPC server.
//! - [`metrics_catalog`]: every metric of the mesh, with its type, unit and help text.
//! - [`health`]: `grpc.health.v1` whose watches end when the server drains.
//! - [`forwarded`]: the client's real address behind trusted proxies.
//! - [`headers`]: the mesh's header names.
//! - [`ids`]: time-ordered identifiers and random secrets.
//! - [`page`]: page size and cursor of list calls.
//! - [`problem`]: RFC 9457 problem+json bodies.
//! - [`process`]: the shape of every binary's `main`.
//! - [`service_config`]: [`service_config!`], the head every service's configuration shares.

pub mod admin;
pub mod breaker;
pub mod cli;
pub mod client;
pub mod config;
pub mod contracts;
pub mod error;
pub mod fault;
pub mod fault_inject;
pub mod forwarded;
pub mod grpc;
pub mod grpc_metrics;
pub mod headers;
pub mod health;
pub mod ids;
pub mod metrics_catalog;
pub mod page;
pub mod problem;
pub mod process;
pub mod reference;
pub mod service_config;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod trace;

pub use error::ServiceError;
pub use store::{Store, StoreConfig, StoreError};
