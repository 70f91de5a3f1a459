//! Generates the tonic clients and servers. protoc comes from `protoc-bin-vendored`, so a fresh
//! machine needs no system install.

use std::io;

const PROTOS: &[&str] = &[
    "mesh/auth/v1/auth.proto",
    "mesh/user/v1/user.proto",
    "mesh/quota/v1/quota.proto",
    "mesh/orders/v1/orders.proto",
    "mesh/articles/v1/articles.proto",
    "mesh/analytics/v1/analytics.proto",
];

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(config, PROTOS, &["."])
}
