#!/usr/bin/env bash
# Makes the container tests' tools available (tests/tests/containers.rs, scripts/image.sh):
#
#   - podman with runc, netavark and aardvark-dns (a compose service name resolves to every
#     replica), iptables (netavark's firewall driver: without it no container on a network
#     starts, and podman says only "netavark: No such file or directory"), and mmdebstrap (the
#     runtime and Redis base images, from Debian's packages): Debian packages, installed when
#     missing and this runs as root;
#   - podman-compose, pinned, from PyPI into a virtualenv under ~/.cache/mesh (COMPOSE_VENV
#     to move it).
#
# Writes what the tests read to the file given as $1 (shell `export` lines, for test.sh to
# source): PODMAN_COMPOSE, the podman-compose to run, or SKIP_CONTAINER_TESTS, the reason
# containers cannot run here. The tests fail when neither is set and podman is missing, so a
# skip is always said, never silent.
set -euo pipefail
cd "$(dirname "$0")/.."

PODMAN_COMPOSE_VERSION=1.6.0
env_file=${1:?usage: container-tools.sh ENV_FILE}
say() { printf '==> %s\n' "$*"; }
skip() {
  printf 'SKIP  containers: %s\n' "$1"
  printf 'export SKIP_CONTAINER_TESTS=%q\n' "$1" >"$env_file"
  exit 0
}

packages=()
command -v podman >/dev/null 2>&1 || packages+=(podman)
command -v runc >/dev/null 2>&1 || packages+=(runc)
[ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ] || packages+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || [ -x /usr/libexec/podman/aardvark-dns ] || packages+=(aardvark-dns)
command -v iptables >/dev/null 2>&1 || packages+=(iptables)
command -v mmdebstrap >/dev/null 2>&1 || packages+=(mmdebstrap)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    skip "${packages[*]} missing and installing them needs root and apt (Debian: apt-get install ${packages[*]})"
  fi
  say "installing ${packages[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  # The runtime base is unpacked with its files' owners, and the tests read the containers'
  # processes in /proc: both want rootful podman.
  skip "the container tests run rootful podman; run as root"
fi
export CONTAINERS_CONF=$PWD/docker/podman/containers.conf
if ! podman info >/dev/null 2>&1; then
  skip "podman is installed but cannot run here: $(podman info 2>&1 | tail -1)"
fi

venv=${COMPOSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh/compose-venv}
if [ "$(cat "$venv/.mesh-pins" 2>/dev/null)" != "$PODMAN_COMPOSE_VERSION" ]; then
  say "installing podman-compose==$PODMAN_COMPOSE_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
  echo "$PODMAN_COMPOSE_VERSION" >"$venv/.mesh-pins"
fi
say "$(podman --version), runc $(runc --version | head -1 | cut -d' ' -f3), $("$venv/bin/podman-compose" --version 2>/dev/null | head -1)"
printf 'export PODMAN_COMPOSE=%q\n' "$venv/bin/podman-compose" >"$env_file"
