#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine.
#
# Installs what the tests need and is missing (redis-server, nginx, chromium, podman and
# mmdebstrap, from Debian packages, when run as root; pinned Python and npm tools into caches),
# checks formatting and lints, then runs every test of the workspace. Tests start their own redis-server on free loopback ports; nothing here touches a
# server already running.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }

need_root_for() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: $1 is missing and installing it needs root. Install it (Debian: apt-get install $2) and run again." >&2
    exit 1
  fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is missing; install a Rust toolchain (https://rustup.rs) and run again." >&2
  exit 1
fi

if ! command -v redis-server >/dev/null 2>&1; then
  need_root_for redis-server redis-server
  say "installing redis-server"
  apt_install redis-server
fi
say "$(redis-server --version | cut -d' ' -f1-3)"

# The bench's hop scenario (meshctl/tests/bench.rs) puts nginx in front of a backend to compare
# the router with it. Debian's package is under /usr/sbin, which a non-root PATH may lack.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  need_root_for nginx nginx-light
  say "installing nginx"
  apt_install nginx-light
fi

# The status page test renders the router's page in headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  need_root_for chromium "chromium fonts-dejavu-core"
  say "installing chromium"
  apt_install chromium fonts-dejavu-core
fi

if cargo fmt --version >/dev/null 2>&1; then
  say "cargo fmt --check"
  cargo fmt --all -- --check
else
  say "rustfmt not installed; skipping the format check"
fi

if cargo clippy --version >/dev/null 2>&1; then
  say "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  say "clippy not installed; skipping lints"
fi

# Dependencies: no new duplicate versions, permissive licenses, crates.io only, and RustSec's
# advisories where the database can be fetched (deny.toml).
say "supply chain (scripts/supply-chain.sh)"
./scripts/supply-chain.sh

# The docs page test drives Swagger UI with playwright-core (npm, pinned in tests/browser).
say "browser tools (scripts/browser-tools.sh)"
./scripts/browser-tools.sh

say "deployment files and the Python tools (scripts/validate-deploy.sh)"
./scripts/validate-deploy.sh

# The container tests build the image from the binaries and run it with podman and
# podman-compose; this installs them, or says why containers cannot run here.
say "container tools (scripts/container-tools.sh)"
mkdir -p target
./scripts/container-tools.sh target/container-tools.env
# shellcheck disable=SC1091 # written just above
. target/container-tools.env

# The chaos tests run the gateway binaries as real processes, and the container tests put them
# in the image: build every binary first.
say "cargo build --bins"
cargo build --workspace --bins --locked

# Every binary reads each MESH_* variable as a configuration key and refuses unknown ones, so one
# set in this shell would fail tests far from its cause.
stray=$(env | sed -n 's/^\(MESH_[A-Za-z0-9_]*\)=.*/\1/p' | grep -vx -e MESH_LOG -e MESH_CONFIG || true)
if [ -n "$stray" ]; then
  echo "warning: set in this shell, and read by every binary under test as a configuration key: $(echo $stray)" >&2
fi

say "cargo test"
cargo test --workspace --locked --no-fail-fast "$@"
