//! Generates the tonic clients and servers, and the encoded descriptor set of every file that
//! server reflection answers from. protoc comes from `protoc-bin-vendored`, so a fresh machine
//! needs no system install.

use std::io;
use std::path::PathBuf;

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
    let out_dir =
        PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR unset"))?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        // Read back by `FILE_DESCRIPTOR_SET` (`include_file_descriptor_set!("mesh_descriptor")`).
        .file_descriptor_set_path(out_dir.join("mesh_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["."])
}
