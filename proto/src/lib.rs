//! The mesh's protobuf contract: one package per service, `mesh.<service>.v1`, with the tonic
//! client and server generated from it at build time.
//!
//! # Layout
//! - [`auth`]: credentials, sessions, API keys, JWKS.
//! - [`user`]: profiles.
//! - [`quota`]: plans and windowed counters.
//! - [`orders`]: idempotent orders listed per owner.
//! - [`articles`]: catalogue, search, stock reservation.
//! - [`analytics`]: events and windowed summaries.
//! - [`FILE_DESCRIPTOR_SET`]: every file above, encoded, for gRPC server reflection.

#![allow(unreachable_pub, clippy::all)]

/// The encoded `google.protobuf.FileDescriptorSet` of every mesh proto file (all six packages),
/// written by `build.rs` at build time. gRPC server reflection answers from it, so `grpcurl`
/// can list and describe the services without the `.proto` files.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mesh_descriptor");

/// `mesh.auth.v1`
pub mod auth {
    tonic::include_proto!("mesh.auth.v1");
}

/// `mesh.user.v1`
pub mod user {
    tonic::include_proto!("mesh.user.v1");
}

/// `mesh.quota.v1`
pub mod quota {
    tonic::include_proto!("mesh.quota.v1");
}

/// `mesh.orders.v1`
pub mod orders {
    tonic::include_proto!("mesh.orders.v1");
}

/// `mesh.articles.v1`
pub mod articles {
    tonic::include_proto!("mesh.articles.v1");
}

/// `mesh.analytics.v1`
pub mod analytics {
    tonic::include_proto!("mesh.analytics.v1");
}
