//! The state file of a running `meshctl up --processes`: what it started and where, so
//! `meshctl chaos` in another terminal finds every instance (docs/chaos.md).
//!
//! JSON, written whole (to a temporary file renamed over it) at start and after every restart,
//! removed when `up` stops. Its default place is `$XDG_RUNTIME_DIR/meshctl/mesh.json`, or
//! `<temp dir>/meshctl-<uid>/mesh.json` without one; `--state` (or `MESHCTL_STATE`) names
//! another.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Everything `up --processes` started.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct MeshState {
    /// The `meshctl up` process.
    pub(crate) pid: u32,
    /// Its admin listener, which also serves the control endpoint (`POST /control/restart/{name}`).
    pub(crate) control: SocketAddr,
    pub(crate) router: SocketAddr,
    /// The router's admin listener: `/mesh/status`.
    pub(crate) router_admin: SocketAddr,
    /// The Redis every component shares.
    pub(crate) store: String,
    /// Where each process's log is.
    pub(crate) logs: PathBuf,
    pub(crate) instances: Vec<Instance>,
}

/// One child process.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Instance {
    /// `identity-gw-1`, `orders-2`, `router-1`, `redis`.
    pub(crate) name: String,
    /// `auth` … `analytics`, `identity-gw`, `business-gw`, `router`, `redis`.
    pub(crate) kind: String,
    /// None while it is not running (killed and not restarted yet).
    pub(crate) pid: Option<u32>,
    /// Its main listener.
    pub(crate) addr: SocketAddr,
    /// Its admin listener (`/readyz`, `/metrics`, `/fault`); Redis has none.
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) log: PathBuf,
}

impl MeshState {
    pub(crate) fn instance(&self, name: &str) -> anyhow::Result<&Instance> {
        self.instances.iter().find(|i| i.name == name).with_context(|| {
            let names: Vec<&str> = self.instances.iter().map(|i| i.name.as_str()).collect();
            format!("no instance {name:?} in this mesh; its instances: {}", names.join(", "))
        })
    }

    /// How many instances of `kind` the mesh has.
    pub(crate) fn replicas(&self, kind: &str) -> usize {
        self.instances.iter().filter(|i| i.kind == kind).count()
    }

    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("no mesh state at {} (is `meshctl up --processes` running?)", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a mesh state file", path.display()))
    }

    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// The state file's default path.
pub(crate) fn default_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("meshctl").join("mesh.json"),
        None => std::env::temp_dir()
            .join(format!("meshctl-{}", rustix::process::getuid().as_raw()))
            .join("mesh.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_and_names_its_instances() {
        let dir = std::env::temp_dir().join(format!("meshctl-state-test-{}", std::process::id()));
        let path = dir.join("mesh.json");
        let state = MeshState {
            pid: 1,
            control: "127.0.0.1:9000".parse().unwrap(),
            router: "127.0.0.1:8080".parse().unwrap(),
            router_admin: "127.0.0.1:9080".parse().unwrap(),
            store: "redis://127.0.0.1:6379".into(),
            logs: dir.clone(),
            instances: vec![Instance {
                name: "identity-gw-1".into(),
                kind: "identity-gw".into(),
                pid: Some(42),
                addr: "127.0.0.1:8081".parse().unwrap(),
                admin: Some("127.0.0.1:9081".parse().unwrap()),
                log: dir.join("identity-gw-1.log"),
            }],
        };
        state.write(&path).unwrap();
        let read = MeshState::read(&path).unwrap();
        assert_eq!(read.instance("identity-gw-1").unwrap().pid, Some(42));
        assert_eq!(read.replicas("identity-gw"), 1);
        let missing = read.instance("orders-9").unwrap_err().to_string();
        assert!(missing.contains("identity-gw-1"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
