//! The mesh composed in one process: every service with its replicas, both gateways and the
//! router, each a library served on its own listener.
//!
//! `meshctl up` runs it on the documented ports; the end-to-end tests run it on port-0
//! listeners against a real Redis, and stop single components to test failures.
//!
//! # Layout
//! - [`mesh`]: [`Mesh::start`] and the running components.

pub mod mesh;

pub use mesh::{Component, Kind, Mesh, MeshOptions};
