//! `meshctl up --processes` as a child of the test, on a loopback host of its own, and
//! `meshctl chaos` against it: the operator's tools exactly as an operator runs them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mesh_tests::process::binary;

/// Every port `meshctl up --processes` listens on with two replicas, besides its Redis.
const PORTS: &[u16] = &[
    8080, 8081, 8181, 8082, 8182, 9000, 9080, 9081, 9181, 9082, 9182, 50051, 50052, 50053, 50054, 50055,
    50056, 50151, 50152, 50153, 50154, 50155, 50156, 9051, 9052, 9053, 9054, 9055, 9056, 9151, 9152, 9153,
    9154, 9155, 9156,
];
/// Time the whole mesh gets to start: 18 debug binaries on a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The drain `meshctl up` gives each tier on SIGTERM, and a little.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A running `meshctl up --processes`; drained (SIGTERM) on drop.
pub(crate) struct ProcessMesh {
    child: Child,
    pub(crate) dir: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) host: Ipv4Addr,
}

impl ProcessMesh {
    pub(crate) fn start(name: &str) -> Self {
        let host = free_host().expect("a loopback host 127.0.0.x with every mesh port free");
        let dir = std::env::temp_dir().join(format!("mesh-tests-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("mesh.json");
        let out = std::fs::File::create(dir.join("up.out")).unwrap();
        let child = Command::new(binary("meshctl"))
            .args(["up", "--processes", "--host", &host.to_string(), "--no-seed"])
            .args(["--client-rps", "0", "--free-limit", "1000000000"])
            .arg("--state")
            .arg(&state)
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("meshctl starts");
        let mut mesh = Self { child, dir, state, host };
        let started = Instant::now();
        loop {
            let said = std::fs::read_to_string(mesh.dir.join("up.out")).unwrap_or_default();
            if said.contains("The mesh is up") {
                break;
            }
            if let Ok(Some(status)) = mesh.child.try_wait() {
                panic!("meshctl up exited ({status}):\n{said}");
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "the mesh did not start within {START_TIMEOUT:?}:\n{said}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("meshctl up --processes on {host}: up in {:?}", started.elapsed());
        mesh
    }

    /// `meshctl chaos <args>` against this mesh.
    pub(crate) fn chaos(&self, args: &[&str]) -> Output {
        let output = Command::new(binary("meshctl"))
            .arg("chaos")
            .arg("--state")
            .arg(&self.state)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("meshctl chaos runs");
        println!("$ meshctl chaos {}\n{}", args.join(" "), String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        output
    }

    pub(crate) fn router_admin(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.host), 9080)
    }
}

impl Drop for ProcessMesh {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shipped scenario file (`chaos/` at the repository's root).
pub(crate) fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../chaos").join(name).to_string_lossy().into_owned()
}

/// A loopback host with every mesh port free, starting from one that depends on this process.
fn free_host() -> Option<Ipv4Addr> {
    let offset = std::process::id() % 90;
    (0..90).map(|n| Ipv4Addr::new(127, 0, 0, (10 + (offset + n) % 90) as u8)).find(|host| {
        PORTS.iter().all(|&port| TcpListener::bind(SocketAddr::new(IpAddr::V4(*host), port)).is_ok())
    })
}
