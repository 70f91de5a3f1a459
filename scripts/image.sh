#!/usr/bin/env bash
# Builds the mesh's container image, one of two ways, and prints its size and the binaries it
# holds (each one run once in the image, as its non-root user):
#
#   scripts/image.sh                      from source: docker/Dockerfile's build stage compiles the
#                                         workspace (needs a registry for the rust builder and the
#                                         distroless runtime base images)
#   scripts/image.sh --from-host          binaries built here by cargo, on a runtime base made from
#                                         Debian packages with mmdebstrap (needs no registry)
#
# Options:
#   --profile dev|release   which cargo build --from-host copies (default: release). The suite
#                           uses dev: the binaries it has already built (stripped of debug info).
#   --tag NAME              the image's name (default: mesh:dev, what compose and k8s expect)
#   --engine podman|docker  the container engine (default: podman if installed, else docker)
#   --redis                 also build the Redis image compose uses here (mesh-redis:bookworm),
#                           from Debian's redis-server package, the same way as the runtime base
#
# The runtime base (localhost/mesh-runtime:bookworm) carries what distroless/cc carries and no
# more: glibc, libgcc, CA certificates, tzdata, netbase, and /etc/passwd with root and nonroot
# (65532). No shell, no package manager. It is made once and kept in the engine's storage.
#
# With podman, CONTAINERS_CONF points at docker/podman/containers.conf unless set: runc as the
# runtime (crun refuses hybrid cgroup hosts) and no default ulimits (sandboxes refuse raising
# RLIMIT_NOFILE), netavark with DNS, so a compose service name resolves to every replica.
set -euo pipefail
cd "$(dirname "$0")/.."

from=source
profile=release
tag=mesh:dev
engine=
redis=0
while [ $# -gt 0 ]; do
  case $1 in
    --from-host) from=host ;;
    --from-source) from=source ;;
    --profile) profile=$2; shift ;;
    --tag) tag=$2; shift ;;
    --engine) engine=$2; shift ;;
    --redis) redis=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case $profile in
  dev) target_dir=debug ;;
  release) target_dir=release ;;
  *) echo "error: --profile is dev or release, not $profile" >&2; exit 2 ;;
esac

if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then engine=podman; else engine=docker; fi
fi
if [ "$engine" = podman ]; then
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/podman/containers.conf}
fi

say() { printf '==> %s\n' "$*"; }

# The workspace's binaries, from cargo itself (validate-deploy.sh checks that the Dockerfile's
# build stage copies exactly these).
metadata=$(cargo metadata --no-deps --format-version 1 --locked)
mapfile -t BINARIES < <(python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "bin" in t["kind"]:
            print(t["name"])' <<<"$metadata")
# Where cargo built them: target/, unless CARGO_TARGET_DIR (or a cargo config) says otherwise.
TARGET=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' <<<"$metadata")

SUITE=bookworm
RUNTIME_BASE=localhost/mesh-runtime:$SUITE
REDIS_IMAGE=localhost/mesh-redis:$SUITE
# Bumped when what goes into a base changes, so a stale base in the engine's storage is rebuilt.
BASE_REVISION=3

# Files of a root filesystem that mmdebstrap's extract variant unpacked, made into what a
# container needs: users, name service, a CA bundle, /tmp; and the package manager's leftovers
# removed. $1 is the root; $2 the packages to keep, comma-separated, or "all". Every other
# package came in only as a dependency of those (openssl and debconf through ca-certificates,
# mawk through base-files), is needed only by maintainer scripts that never run here, and is
# removed again, file by file.
finish_rootfs() {
  local root=$1 keep=$2
  local archives=$root/var/cache/apt/archives
  for deb in "$archives"/*.deb; do
    [ -e "$deb" ] || continue
    case ",$keep," in *",all,"* | *",$(dpkg-deb -f "$deb" Package),"*) continue ;; esac
    dpkg-deb --fsys-tarfile "$deb" | tar -t | while read -r path; do
      [ -d "$root/$path" ] || rm -f "$root/$path"
    done
    rm -f "$deb"
  done
  # What update-ca-certificates makes of the Mozilla bundle (the maintainer script does not run).
  if [ -d "$root/usr/share/ca-certificates/mozilla" ]; then
    mkdir -p "$root/etc/ssl/certs"
    cat "$root"/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
    # A shell script, and there is no shell to run it.
    rm -f "$root/usr/sbin/update-ca-certificates"
  fi
  # Package records where scanners (trivy, grype) look for them in distroless images.
  mkdir -p "$root/var/lib/dpkg/status.d"
  for deb in "$archives"/*.deb; do
    [ -e "$deb" ] || continue
    local name
    name=$(dpkg-deb -f "$deb" Package)
    { dpkg-deb -f "$deb" Package Version Architecture Source; echo "Status: install ok installed"; } \
      >"$root/var/lib/dpkg/status.d/$name"
  done
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
EOF
  echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
  mkdir -p "$root/tmp" "$root/home/nonroot" "$root/root"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  chown 65532:65532 "$root/home/nonroot"
  # Redis's working directory, where compose mounts its volume: a new volume takes the owner of
  # the image's directory, so the non-root server can write its append-only file there.
  if [ -e "$root/usr/bin/redis-server" ]; then
    mkdir -p "$root/data"
    chown 65532:65532 "$root/data"
  fi
  rm -rf "$root/etc/apt" "$root/etc/dpkg" "$root/var/lib/apt" "$root/var/cache/apt" \
    "$root/etc/debconf.conf" "$root/etc/update-motd.d" "$root/dev"
}

# Makes a base image from Debian packages: $1 image name, $2 comma-separated packages, $3 what
# to keep of them and their dependencies (see finish_rootfs).
debian_base() {
  local image=$1 packages=$2 keep=$3
  local want="$SUITE|$packages|$keep|$BASE_REVISION"
  if [ "$($engine image inspect --format '{{index .Labels "org.mesh.base"}}' "$image" 2>/dev/null)" = "$want" ]; then
    return
  fi
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "error: mmdebstrap is missing (Debian: apt-get install mmdebstrap)" >&2
    exit 1
  fi
  say "making $image from Debian $SUITE packages: $packages"
  if [ "$(id -u)" != 0 ]; then
    echo "error: making $image needs root (mmdebstrap unpacks packages with their owners); or build from source" >&2
    exit 1
  fi
  local t0 root
  t0=$(date +%s)
  root=$(mktemp -d)
  # The downloaded packages are kept (--skip=cleanup/apt/cache) for finish_rootfs to read.
  mmdebstrap --quiet --variant=extract --include="$packages" --skip=cleanup/apt/cache \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    "$SUITE" "$root" </dev/null
  finish_rootfs "$root" "$keep"
  tar --numeric-owner -C "$root" -c . | $engine import --quiet \
    --change "LABEL org.mesh.base=$want" --change "USER 65532:65532" - "$image" >/dev/null
  rm -rf "$root"
  say "made $image in $(($(date +%s) - t0))s"
}

build_from_host() {
  # gcc-12-base is libgcc-s1's (only its copyright); distroless/cc carries it too.
  local base=libc6,libgcc-s1,ca-certificates,tzdata,netbase,base-files
  debian_base "$RUNTIME_BASE" "$base" "$base,gcc-12-base"
  local context=$TARGET/image/context
  rm -rf "$context"
  mkdir -p "$context/bin"
  say "copying the $profile binaries from $TARGET/$target_dir"
  for bin in "${BINARIES[@]}"; do
    local src=$TARGET/$target_dir/$bin
    if [ ! -x "$src" ]; then
      echo "error: $src is missing: run cargo build --bins$([ "$profile" = release ] && echo ' --release') first" >&2
      exit 1
    fi
    # Debug info stays on the host: the image is for running, not for debugging.
    objcopy --strip-debug "$src" "$context/bin/$bin"
  done
  say "$engine build --target from-host -t $tag"
  $engine build --quiet -f docker/Dockerfile --target from-host \
    --build-arg RUNTIME_IMAGE="$RUNTIME_BASE" -t "$tag" "$context" >/dev/null
}

build_from_source() {
  say "$engine build -t $tag . (compiles the workspace in the builder image)"
  $engine build -f docker/Dockerfile -t "$tag" .
}

started=$(date +%s)
if [ "$from" = host ]; then build_from_host; else build_from_source; fi
if [ "$redis" = 1 ]; then
  # redis-tools too: compose's health check runs redis-cli. The libraries come as dependencies;
  # no maintainer script runs, so no redis user: the container runs as 65532.
  debian_base "$REDIS_IMAGE" redis-server,redis-tools,ca-certificates,tzdata,base-files all
fi

size=$($engine image inspect --format '{{.Size}}' "$tag")
say "$tag: $((size / 1024 / 1024)) MiB, built in $(($(date +%s) - started))s; it holds:"
for bin in "${BINARIES[@]}"; do
  printf '    %-20s %s\n' "$bin" "$($engine run --rm --read-only --network none "$tag" "/usr/local/bin/$bin" --version)"
done
user=$($engine image inspect --format '{{.Config.User}}' "$tag")
say "runs as user $user"
