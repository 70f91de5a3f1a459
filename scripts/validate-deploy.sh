#!/usr/bin/env bash
# Validates the deployment files without a Docker engine or a cluster:
#
#   1. renders every Kubernetes overlay (k8s/overlays/*) with `kubectl kustomize`;
#   2. validates each rendered object against the Kubernetes OpenAPI schemas (kubernetes-validate,
#      strict: unknown fields are errors) of the newest version it ships and of the oldest we
#      support (1.30: the preStop sleep action);
#   3. validates docker/compose.yaml against the Compose specification (check-jsonschema);
#   4. checks that docker/Dockerfile copies exactly the workspace's binaries and that every
#      command in the manifests and in compose.yaml names one of them, and that
#      docker/prometheus.yml scrapes every component of compose.yaml on its admin port;
#   5. runs checkov on the rendered manifests and on docker/Dockerfile: any failed check not
#      listed, with its reason, in k8s/checkov-skips.txt fails the validation.
#
# Needs python3 (3.9+) and kubectl (which embeds kustomize). Without kubectl the Kubernetes
# manifests cannot be rendered: steps 1, 2 and checkov's manifest checks are skipped, saying so,
# and the compose file and Dockerfile are still validated. The Python tools are installed,
# pinned, into a virtualenv under ~/.cache/mesh (DEPLOY_VENV to move it) on first use.
# Exits non-zero on the first failure; prints one summary line per validation.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
# Not a deploy tool: the API conformance test (tests/tests/conformance.rs) runs it from this
# virtualenv, so one cached install serves both.
SCHEMATHESIS_VERSION=4.32.5
# Kubernetes versions whose schemas the manifests must satisfy: the newest kubernetes-validate
# ships, and the oldest cluster these manifests support.
K8S_VERSIONS=(1.37.0 1.30.0)

started=$(date +%s)
out=target/deploy
mkdir -p "$out"

say() { printf '==> %s\n' "$*"; }
pass() { printf 'PASS  %-22s %s\n' "$1" "$2"; }
fail() {
  printf 'FAIL  %-22s %s\n' "$1" "$2" >&2
  exit 1
}

# === tools ===

command -v python3 >/dev/null 2>&1 || fail tools "python3 is missing (Debian: apt-get install python3 python3-venv)"
have_kubectl=1
if ! command -v kubectl >/dev/null 2>&1; then
  have_kubectl=0
  printf 'SKIP  %-22s %s\n' kubernetes "kubectl is missing, so the Kubernetes manifests are neither rendered nor validated (install kubectl to check them)"
fi

venv=${DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh/deploy-venv}
want="checkov==$CHECKOV_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION schemathesis==$SCHEMATHESIS_VERSION"
if [ "$(cat "$venv/.mesh-pins" 2>/dev/null)" != "$want" ]; then
  say "installing $want into $venv"
  t0=$(date +%s)
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 without its venv module.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      rm -rf "$venv"
      python3 -m venv "$venv"
    else
      fail tools "python3 cannot create a virtualenv (Debian: apt-get install python3-venv)"
    fi
  fi
  # shellcheck disable=SC2086 # $want is a list of requirements
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $want
  echo "$want" >"$venv/.mesh-pins"
  say "installed in $(($(date +%s) - t0))s"
fi
py=$venv/bin/python

# === 1. render ===

overlays=()
for dir in k8s/overlays/*/; do
  [ "$have_kubectl" = 1 ] || break
  name=$(basename "$dir")
  kubectl kustomize "$dir" >"$out/$name.yaml" 2>"$out/$name.err" || {
    cat "$out/$name.err" >&2
    fail "render $name" "kubectl kustomize $dir failed"
  }
  overlays+=("$name")
  pass "render $name" "$(grep -c '^kind:' "$out/$name.yaml") objects -> $out/$name.yaml"
done
[ "${#overlays[@]}" -gt 0 ] || [ "$have_kubectl" = 0 ] || fail render "no overlay under k8s/overlays"

# === 2. schemas ===

for name in "${overlays[@]}"; do
  for version in "${K8S_VERSIONS[@]}"; do
    if ! "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$out/$name.yaml" \
      >"$out/$name.validate.log" 2>&1; then
      grep -E '^(ERROR|WARN)' "$out/$name.validate.log" >&2 || cat "$out/$name.validate.log" >&2
      fail "schema $name" "does not validate against Kubernetes $version (strict)"
    fi
  done
  pass "schema $name" "valid against Kubernetes ${K8S_VERSIONS[*]} (strict)"
done

if ! "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker/compose.yaml \
  >"$out/compose.log" 2>&1; then
  cat "$out/compose.log" >&2
  fail "schema compose" "docker/compose.yaml does not follow the Compose specification"
fi
pass "schema compose" "docker/compose.yaml follows the Compose specification"

# === 3. binaries ===

cargo metadata --no-deps --format-version 1 --locked >"$out/metadata.json" 2>"$out/metadata.err" || {
  cat "$out/metadata.err" >&2
  fail binaries "cargo metadata failed"
}
rendered=()
for name in "${overlays[@]}"; do rendered+=("$out/$name.yaml"); done
"$py" - "$out/metadata.json" docker/Dockerfile docker/compose.yaml "${rendered[@]}" <<'EOF' || exit 1
import json, re, sys

metadata, dockerfile, compose, *manifests = sys.argv[1:]
workspace = {t["name"] for p in json.load(open(metadata))["packages"] for t in p["targets"] if "bin" in t["kind"]}
text = open(dockerfile).read().replace("\\\n", " ")
loop = re.search(r"for bin in ([^;]*);", text)
copied = set(loop.group(1).split()) if loop else set()
problems = []
if copied != workspace:
    problems.append(f"docker/Dockerfile copies {sorted(copied)}, the workspace builds {sorted(workspace)}")
for path in [compose, *manifests]:
    for used in re.findall(r'^\s*(?:-\s+)?command:\s*\["/usr/local/bin/([^"]+)"', open(path).read(), re.M):
        if used not in workspace:
            problems.append(f"{path} runs /usr/local/bin/{used}, which the image does not contain")
for p in problems:
    print(f"FAIL  binaries               {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"PASS  binaries               the image holds the {len(workspace)} workspace binaries; every command names one")
EOF

# === 3b. scrapes ===

# Every component of compose.yaml is scraped by docker/prometheus.yml on its admin port, and
# every scrape job names a component (PyYAML comes with checkov).
"$py" - docker/compose.yaml docker/prometheus.yml <<'EOF' || exit 1
import sys, yaml

compose, prometheus = (yaml.safe_load(open(p)) for p in sys.argv[1:])
admin = {}
for name, svc in compose["services"].items():
    listen = (svc.get("environment") or {}).get("MESH_ADMIN_LISTEN")
    if listen:
        admin[name] = int(str(listen).rsplit(":", 1)[1])
scraped = {}
for job in prometheus["scrape_configs"]:
    for sd in job.get("dns_sd_configs", []):
        for target in sd["names"]:
            scraped[target] = sd["port"]
problems = [f"{n} (admin port {p}) is not scraped by docker/prometheus.yml" for n, p in admin.items() if n not in scraped]
problems += [f"docker/prometheus.yml scrapes {n} on {p}, its admin port is {admin[n]}" for n, p in scraped.items() if n in admin and admin[n] != p]
problems += [f"docker/prometheus.yml scrapes {n}, which is not a component of compose.yaml" for n in scraped if n not in admin]
for p in problems:
    print(f"FAIL  scrapes                {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"PASS  scrapes                Prometheus scrapes all {len(admin)} components of compose.yaml on their admin ports")
EOF

# === 4. checkov ===

skips=k8s/checkov-skips.txt
checkov_frameworks=(dockerfile)
[ "$have_kubectl" = 1 ] && checkov_frameworks+=(kubernetes)
checkov_args=(--skip-download --framework "${checkov_frameworks[@]}" -o json -f docker/Dockerfile)
for f in "${rendered[@]}"; do checkov_args+=(-f "$f"); done
# Exit status 1 only means "some check failed"; the skip list decides below.
"$venv/bin/checkov" "${checkov_args[@]}" >"$out/checkov.json" 2>"$out/checkov.log" || true
"$py" - "$out/checkov.json" "$skips" "${checkov_frameworks[@]}" <<'EOF' || exit 1
import json, sys

report_path, skips_path, *expected = sys.argv[1:]
skips, bad = {}, []
for n, line in enumerate(open(skips_path), 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    check, _, reason = line.partition(" ")
    if not reason.strip():
        bad.append(f"{skips_path}:{n}: {check} has no reason")
    skips[check] = reason.strip()
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)

try:
    reports = json.load(open(report_path))
except ValueError:
    print(open(report_path).read()[-2000:], file=sys.stderr)
    print("FAIL  checkov                checkov did not produce a JSON report (see target/deploy/checkov.log)", file=sys.stderr)
    sys.exit(1)
if isinstance(reports, dict):
    reports = [reports]
frameworks = {r.get("check_type") for r in reports if "results" in r}
if frameworks != set(expected):
    print(f"FAIL  checkov                expected {' and '.join(sorted(expected))} results, got {sorted(map(str, frameworks))}", file=sys.stderr)
    sys.exit(1)

passed, failed, skipped, used, per_framework = 0, [], [], set(), []
for report in sorted(reports, key=lambda r: r.get("check_type", "")):
    results = report.get("results", {})
    counts = [len(results.get("passed_checks", [])), 0, 0]
    passed += counts[0]
    for c in results.get("failed_checks", []):
        where = f'{c["check_id"]} {c.get("resource", "?")} ({c.get("file_path", "?")}): {c.get("check_name", "")}'
        if c["check_id"] in skips:
            skipped.append(where)
            used.add(c["check_id"])
            counts[2] += 1
        else:
            failed.append(where)
            counts[1] += 1
    per_framework.append("{}: {}/{}/{}".format(report["check_type"], *counts))
# Without the manifests, their checks' entries cannot be judged.
for check in sorted(set(skips) - used) if "kubernetes" in expected else []:
    print(f"NOTE  checkov                {check} is listed in {skips_path} but no longer fails: remove it")
for f in failed:
    print(f"      {f}", file=sys.stderr)
summary = (
    f"{passed} checks passed, {len(failed)} failed, {len(skipped)} skipped by {len(used)} entries of {skips_path}"
    f" (passed/failed/skipped: {', '.join(per_framework)})"
)
if failed:
    print(f"FAIL  checkov                {summary}", file=sys.stderr)
    sys.exit(1)
print(f"PASS  checkov                {summary}")
EOF

say "deployment files valid in $(($(date +%s) - started))s"
