//! The dev overlay's workloads run, as a kubelet would run them, in the image the compose test
//! runs: each Deployment (and the in-cluster Redis's StatefulSet) as one podman container with the
//! manifest's command, args and environment (values resolved from the rendered ConfigMaps and
//! Secrets), its security context, its volumes mounted where it mounts them, and the name of the
//! Service that selects it as its network alias. Then every probe must pass as the kubelet checks
//! it, and one user registers and logs in through the router, so the addresses in the env really
//! lead router → gateways → services → Redis.
//!
//! What cannot be reproduced stands in for itself: the image is the test image (and Debian's
//! Redis for `redis:*-alpine`), a claim of a StatefulSet is a tmpfs, and resource limits are not
//! applied (the image holds debug binaries). Anything else the pods use that this test does not
//! know fails it, so a manifest cannot grow past what was proven here.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::PASSWORD;
use support::containers::{IMAGE, Podman, REDIS_IMAGE, exclusive, podman, repo_root};
use support::manifests::kustomize;
use tokio::task::JoinSet;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The least time a probe is given to pass, whatever its thresholds: debug binaries starting
/// together on a busy 2-core machine.
const LEAST_PROBE_DEADLINE: Duration = Duration::from_secs(60);

/// The workloads of the rendered overlay whose pods this test runs.
const WORKLOADS: &[&str] = &["Deployment", "StatefulSet"];

/// The rendered objects, looked up as the API server would: by kind and name.
struct Rendered {
    docs: Vec<Value>,
    namespace: String,
}

impl Rendered {
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the overlay renders no {kind} {name}"))
    }

    /// `key` of a ConfigMap's `data` or a Secret's (base64) `data`.
    fn key(&self, kind: &str, name: &str, key: &str) -> Vec<u8> {
        self.data(kind, name).remove(key).unwrap_or_else(|| panic!("{kind} {name} has no key {key}"))
    }

    fn data(&self, kind: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
        let object = self.get(kind, name);
        let data = object["data"].as_object().into_iter().flatten();
        data.map(|(key, value)| {
            let text = value.as_str().unwrap_or_else(|| panic!("{kind} {name}: {key} is not a string"));
            let bytes = match kind {
                "Secret" => base64::engine::general_purpose::STANDARD
                    .decode(text.split_whitespace().collect::<String>())
                    .unwrap_or_else(|e| panic!("Secret {name}: {key} is not base64: {e}")),
                _ => text.as_bytes().to_vec(),
            };
            (key.clone(), bytes)
        })
        .collect()
    }

    /// Names a pod with these labels is reached by: each selecting Service's, short and
    /// namespace-qualified, as cluster DNS answers them.
    fn aliases(&self, labels: &Value) -> Vec<String> {
        let ns = &self.namespace;
        let services = self.docs.iter().filter(|d| d["kind"] == "Service");
        let selecting = services.filter(|s| {
            s["spec"]["selector"]
                .as_object()
                .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels[k] == *v))
        });
        selecting
            .flat_map(|s| {
                let name = s["metadata"]["name"].as_str().unwrap();
                [
                    name.to_owned(),
                    format!("{name}.{ns}"),
                    format!("{name}.{ns}.svc"),
                    format!("{name}.{ns}.svc.cluster.local"),
                ]
            })
            .collect()
    }
}

/// The containers, network and files of one run, removed when dropped (a panic included).
struct Cluster<'a> {
    podman: &'a Podman,
    network: String,
    containers: Vec<String>,
    dir: PathBuf,
}

impl Cluster<'_> {
    /// The last lines each container wrote, to see where a request went wrong.
    fn logs(&self) -> String {
        let mut logs = String::new();
        for name in &self.containers {
            let output = self.podman.try_run(&["logs", "--tail", "15", name]);
            let text = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
            logs.push_str(&format!("--- {name}:\n{text}"));
        }
        logs
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        for name in &self.containers {
            self.podman.try_run(&["rm", "-f", "-t", "2", name]);
        }
        self.podman.try_run(&["network", "rm", "-f", &self.network]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One workload's pod, started: what its probes need.
struct Started {
    workload: String,
    container: String,
    ip: String,
    spec: Value,
    started: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_of_the_dev_overlay_runs_in_the_image_with_its_env_and_passes_its_probes() {
    let Some(podman) = podman() else { return };
    let Some(docs) = kustomize(&repo_root().join("k8s/overlays/dev")) else {
        eprintln!("SKIP: kubectl is not installed, so the dev overlay was not run");
        return;
    };
    let _one = exclusive().await;
    podman.image();
    let namespace = docs.iter().find(|d| d["kind"] == "Namespace").expect("the overlay has a Namespace")
        ["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let rendered = Rendered { docs, namespace };

    let run = format!("k8s-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("mesh-{run}"));
    let mut cluster = Cluster { podman: &podman, network: run.clone(), containers: Vec::new(), dir };
    std::fs::create_dir_all(&cluster.dir).unwrap();
    podman.run(&["network", "create", &run]);

    let all = Instant::now();
    let mut pods = Vec::new();
    let workloads = rendered.docs.iter().filter(|d| WORKLOADS.iter().any(|k| d["kind"] == *k));
    for workload in workloads {
        pods.push(start(&rendered, &mut cluster, workload));
    }
    assert!(pods.len() >= 10, "expected the mesh's nine Deployments and Redis, found {}", pods.len());

    let mut probing = JoinSet::new();
    for pod in pods {
        probing.spawn(async move {
            let passed = probe_all(&pod).await;
            (pod.workload, passed, pod.started.elapsed())
        });
    }
    let mut results = Vec::new();
    while let Some(done) = probing.join_next().await {
        match done {
            Ok(result) => results.push(result),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let probed = all.elapsed();
    results.sort();
    for (workload, passed, took) in &results {
        println!("{workload:<28} {:<54} passed {took:.1?} after its start", passed.join(", "));
    }

    let router = rendered.get("Deployment", "gateway-router");
    let router_ip = podman.ip(&container_name(&run, "gateway-router"));
    let router_container = &router["spec"]["template"]["spec"]["containers"][0];
    let base = format!("http://{router_ip}:{}", port(router_container, &json!("http")));
    let admin = format!("http://{router_ip}:{}", port(router_container, &json!("admin")));
    // A gateway that started after the router is found at its next DNS refresh (a headless
    // Service has no address before its pod is ready), so the router may be ready before its pools.
    let routed = Instant::now();
    let pools = every_pool_has_an_instance(&admin).await;
    let routed = routed.elapsed();
    let walked = Instant::now();
    let attempts = sign_up(&base).await.unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    println!(
        "{} workloads: every probe passed {probed:.1?} after the first container started; \
         the router had an instance in each pool ({pools}) {routed:.1?} later; register and login \
         through it took {:.1?} ({attempts} requests); {:.1?} in all",
        results.len(),
        walked.elapsed(),
        all.elapsed()
    );
}

fn container_name(run: &str, workload: &str) -> String {
    format!("{run}-{workload}")
}

/// Starts the one container of `workload`'s pod as the kubelet would.
fn start(rendered: &Rendered, cluster: &mut Cluster<'_>, workload: &Value) -> Started {
    let kind = workload["kind"].as_str().unwrap();
    let name = workload["metadata"]["name"].as_str().unwrap();
    let at = format!("{kind} {name}");
    let template = &workload["spec"]["template"];
    let pod = &template["spec"];
    assert!(pod.get("initContainers").is_none(), "{at}: init containers are not run by this test");
    let containers = pod["containers"].as_array().unwrap_or_else(|| panic!("{at}: no containers"));
    assert_eq!(containers.len(), 1, "{at}: this test runs pods of one container");
    let c = &containers[0];
    let container = container_name(&cluster.network, name);

    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        container.clone(),
        // The pod's name is its hostname, and what `fieldRef: metadata.name` gives.
        "--hostname".into(),
        container.clone(),
        "--network".into(),
        cluster.network.clone(),
    ];
    for alias in rendered.aliases(&template["metadata"]["labels"]) {
        args.extend(["--network-alias".into(), alias]);
    }
    // What each key means to podman is below; a key it does not know would go unproven.
    let known = |context: &Value, keys: &[&str]| {
        for (key, value) in context.as_object().into_iter().flatten() {
            assert!(keys.contains(&key.as_str()), "{at}: securityContext {key} is not run by this test");
            if key == "seccompProfile" {
                // podman's default profile is the runtime's default.
                assert_eq!(value["type"], "RuntimeDefault", "{at}: seccompProfile {value} is not run");
            }
        }
    };
    let ids = ["runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile"];
    known(&pod["securityContext"], &[&ids[..], &["fsGroup"]].concat());
    let container_keys = ["allowPrivilegeEscalation", "capabilities", "readOnlyRootFilesystem"];
    known(&c["securityContext"], &[&ids[..], &container_keys[..]].concat());
    let security = |key: &str| c["securityContext"].get(key).or_else(|| pod["securityContext"].get(key));
    let id = |key: &str| security(key).and_then(number);
    if let Some(user) = id("runAsUser") {
        let group = id("runAsGroup").map(|g| format!(":{g}")).unwrap_or_default();
        args.extend(["--user".into(), format!("{user}{group}")]);
    }
    let fs_group = number(&pod["securityContext"]["fsGroup"]);
    if let Some(group) = fs_group {
        args.extend(["--group-add".into(), group.to_string()]);
    }
    if security("runAsNonRoot").is_some_and(flag) {
        assert!(id("runAsUser").is_some_and(|u| u != 0), "{at}: runAsNonRoot needs a non-root runAsUser");
    }
    if flag(&c["securityContext"]["readOnlyRootFilesystem"]) {
        args.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    let escalation = &c["securityContext"]["allowPrivilegeEscalation"];
    if *escalation == false || *escalation == "false" {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    let caps = &c["securityContext"]["capabilities"];
    for cap in caps["drop"].as_array().into_iter().flatten() {
        args.extend(["--cap-drop".into(), cap.as_str().unwrap().to_owned()]);
    }
    for cap in caps["add"].as_array().into_iter().flatten() {
        args.extend(["--cap-add".into(), cap.as_str().unwrap().to_owned()]);
    }

    for (var, value) in env(rendered, c, &container, &at) {
        args.extend(["--env".into(), format!("{var}={value}")]);
    }
    let files = cluster.dir.join(name);
    for mount in c["volumeMounts"].as_array().into_iter().flatten() {
        args.extend(volume(rendered, workload, mount, &files, fs_group, &at));
    }

    let image = c["image"].as_str().unwrap();
    let image = match image.split_once(':').map_or(image, |(repo, _)| repo) {
        "mesh" => IMAGE,
        "redis" => REDIS_IMAGE,
        other => panic!("{at}: no local stand-in for the image {other}"),
    };
    let strings = |key: &str| -> Option<Vec<String>> {
        c.get(key)?.as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
    };
    if let Some(command) = strings("command") {
        args.extend(["--entrypoint".into(), serde_json::to_string(&command).unwrap()]);
    }
    args.push(image.to_owned());
    args.extend(strings("args").unwrap_or_default());

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Recorded first: a run that fails may still leave the container created.
    cluster.containers.push(container.clone());
    cluster.podman.run(&args);
    let started = Instant::now();
    let ip = cluster.podman.ip(&container);
    Started { workload: format!("{kind}/{name}"), container, ip, spec: c.clone(), started }
}

/// The container's environment as the kubelet resolves it: `envFrom` first, `env` over it.
fn env(rendered: &Rendered, c: &Value, pod_name: &str, at: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or_default();
        let (kind, source) = match (&from["configMapRef"], &from["secretRef"]) {
            (Value::Null, Value::Null) => panic!("{at}: envFrom {from} is neither a ConfigMap nor a Secret"),
            (Value::Null, secret) => ("Secret", secret),
            (config, _) => ("ConfigMap", config),
        };
        for (key, value) in rendered.data(kind, source["name"].as_str().unwrap()) {
            vars.push((format!("{prefix}{key}"), String::from_utf8(value).unwrap()));
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let var = e["name"].as_str().unwrap().to_owned();
        let value = match (&e["value"], &e["valueFrom"]) {
            (Value::String(v), _) => v.clone(),
            (Value::Null, Value::Null) => String::new(),
            (_, from) => {
                let key_of = |kind: &str, r: &Value| {
                    let bytes = rendered.key(kind, r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
                    String::from_utf8(bytes).unwrap()
                };
                match (&from["configMapKeyRef"], &from["secretKeyRef"], &from["fieldRef"]["fieldPath"]) {
                    (r, _, _) if r.is_object() => key_of("ConfigMap", r),
                    (_, r, _) if r.is_object() => key_of("Secret", r),
                    (_, _, Value::String(f)) if f == "metadata.name" => pod_name.to_owned(),
                    (_, _, Value::String(f)) if f == "metadata.namespace" => rendered.namespace.clone(),
                    _ => panic!("{at}: {var} comes from {from}, which this test cannot resolve"),
                }
            }
        };
        assert!(
            !value.contains("$("),
            "{at}: {var} refers to another variable, which this test does not expand"
        );
        vars.retain(|(v, _)| *v != var);
        vars.push((var, value));
    }
    vars
}

/// The podman options that mount `mount` as the pod's volume of that name would be.
fn volume(
    rendered: &Rendered,
    workload: &Value,
    mount: &Value,
    files: &Path,
    fs_group: Option<u64>,
    at: &str,
) -> Vec<String> {
    let name = mount["name"].as_str().unwrap();
    let path = mount["mountPath"].as_str().unwrap();
    assert!(mount.get("subPath").is_none(), "{at}: subPath mounts are not run by this test");
    let volumes = workload["spec"]["template"]["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    let claimed = workload["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|claim| claim["metadata"]["name"] == name);
    let Some(volume) = volumes.iter().find(|v| v["name"] == name) else {
        assert!(claimed, "{at}: volume {name} is neither in the pod nor claimed");
        return writable_tmpfs(path);
    };
    if volume.get("emptyDir").is_some() {
        return writable_tmpfs(path);
    }
    let (kind, source, object_name) = match (&volume["configMap"], &volume["secret"]) {
        (Value::Null, Value::Null) => panic!("{at}: volume {name} is of a kind this test does not mount"),
        (Value::Null, s) => ("Secret", s, s["secretName"].as_str().unwrap()),
        (c, _) => ("ConfigMap", c, c["name"].as_str().unwrap()),
    };
    let dir = files.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let data = rendered.data(kind, object_name);
    // The kubelet's default mode is 0644; `items` picks keys and places them.
    let default_mode = number(&source["defaultMode"]).unwrap_or(0o644) as u32;
    let placed: Vec<(String, String, u32)> = match source["items"].as_array() {
        Some(items) => items
            .iter()
            .map(|i| {
                let mode = number(&i["mode"]).map_or(default_mode, |m| m as u32);
                (i["key"].as_str().unwrap().to_owned(), i["path"].as_str().unwrap().to_owned(), mode)
            })
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone(), default_mode)).collect(),
    };
    for (key, file, mode) in placed {
        let content = data.get(&key).unwrap_or_else(|| panic!("{at}: {kind} {object_name} has no key {key}"));
        let file = dir.join(file);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        // As the kubelet does: the files belong to the pod's fsGroup, so a 0440 key is readable.
        std::os::unix::fs::chown(&file, None, fs_group.map(|g| g as u32)).unwrap();
    }
    // ConfigMap and Secret volumes are read-only whatever the mount says.
    vec!["--volume".into(), format!("{}:{path}:ro", dir.display())]
}

/// A fresh claim or emptyDir: an empty directory the pod's user can write (the kubelet gives it
/// to the fsGroup). `U` makes the container's user own it; podman 4.3 ignores `tmpfs-mode`.
fn writable_tmpfs(path: &str) -> Vec<String> {
    vec!["--mount".into(), format!("type=tmpfs,destination={path},U=true")]
}

/// Checks the startup, readiness and liveness probes in the kubelet's order, each until it
/// passes within its thresholds: which passed.
async fn probe_all(pod: &Started) -> Vec<String> {
    let mut passed = Vec::new();
    for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let Some(probe) = pod.spec.get(kind) else { continue };
        let seconds = |key: &str, default: u64| number(&probe[key]).unwrap_or(default);
        let allowed = Duration::from_secs(
            seconds("initialDelaySeconds", 0) + seconds("periodSeconds", 10) * seconds("failureThreshold", 3),
        )
        .max(LEAST_PROBE_DEADLINE);
        let timeout = Duration::from_secs(seconds("timeoutSeconds", 1));
        let deadline = Instant::now() + allowed;
        let mut last;
        loop {
            last = check(pod, probe, timeout).await;
            if last.is_ok() {
                break;
            }
            if !running(&pod.container) || Instant::now() > deadline {
                let logs = Podman.try_run(&["logs", "--tail", "30", &pod.container]);
                panic!(
                    "{}: the {kind} {probe} did not pass within {allowed:?} (running: {}): {}\nlogs:\n{}{}",
                    pod.workload,
                    running(&pod.container),
                    last.unwrap_err(),
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let how = ["httpGet", "grpc", "exec"].into_iter().find(|h| probe.get(*h).is_some());
        passed.push(format!("{} ({})", kind.trim_end_matches("Probe"), how.unwrap_or("?")));
    }
    assert!(!passed.is_empty(), "{}: no probe, so the kubelet could not tell it is ready", pod.workload);
    passed
}

fn running(container: &str) -> bool {
    let state = Podman.try_run(&["inspect", "--format", "{{.State.Running}}", container]);
    String::from_utf8_lossy(&state.stdout).trim() == "true"
}

/// One attempt of `probe`, as the kubelet makes it.
async fn check(pod: &Started, probe: &Value, timeout: Duration) -> Result<(), String> {
    if let Some(get) = probe.get("httpGet") {
        assert!(
            get["scheme"].as_str().is_none_or(|s| s == "HTTP"),
            "{}: HTTPS probes are not run",
            pod.workload
        );
        let host = get["host"].as_str().unwrap_or(&pod.ip);
        let url =
            format!("http://{host}:{}{}", port(&pod.spec, &get["port"]), get["path"].as_str().unwrap_or("/"));
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
        let answer = client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        // The kubelet's success: any status from 200 to 399.
        let status = answer.status();
        return match status.is_success() || status.is_redirection() {
            true => Ok(()),
            false => Err(format!("GET {url}: {status}")),
        };
    }
    if let Some(grpc) = probe.get("grpc") {
        let addr = format!("http://{}:{}", pod.ip, port(&pod.spec, &grpc["port"]));
        let endpoint = tonic::transport::Endpoint::from_shared(addr.clone()).unwrap();
        let channel = endpoint
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let service = grpc["service"].as_str().unwrap_or_default().to_owned();
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest { service })
            .await
            .map_err(|e| format!("{addr} grpc.health.v1 Check: {e}"))?;
        let status = answer.into_inner().status;
        return match status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            true => Ok(()),
            false => Err(format!("{addr} grpc.health.v1 Check: status {status}")),
        };
    }
    if let Some(exec) = probe.get("exec") {
        let command: Vec<String> =
            exec["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        let container = pod.container.clone();
        let output = tokio::task::spawn_blocking(move || {
            let mut args = vec!["exec", &container];
            args.extend(command.iter().map(String::as_str));
            Podman.try_run(&args)
        })
        .await
        .unwrap();
        return match output.status.success() {
            true => Ok(()),
            false => Err(format!("exec {}: {}", exec["command"], String::from_utf8_lossy(&output.stderr))),
        };
    }
    panic!("{}: a probe this test does not run: {probe}", pod.workload)
}

/// A number of the manifests: the YAML reader gives every scalar as a string.
fn number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

fn flag(v: &Value) -> bool {
    *v == true || *v == "true"
}

/// A probe's `port`: a number, or the name of one of the container's ports.
fn port(c: &Value, port: &Value) -> u64 {
    if let Some(number) = number(port) {
        return number;
    }
    let ports = c["ports"].as_array().into_iter().flatten();
    ports
        .into_iter()
        .find(|p| p["name"] == *port)
        .and_then(|p| number(&p["containerPort"]))
        .unwrap_or_else(|| panic!("no container port named {port} in {}", c["ports"]))
}

/// Waits until every pool of the router has a healthy instance, as its `/mesh/status` says: the
/// pools' names.
async fn every_pool_has_an_instance(admin: &str) -> String {
    // The router's defaults: names resolved again every 5 s, instances probed every second.
    let within = Duration::from_secs(30);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(answer) = http.get(format!("{admin}/mesh/status?view=full")).send().await {
            last = answer.json().await.unwrap_or(Value::Null);
            let pools = last["pools"].as_array().cloned().unwrap_or_default();
            let healthy = |p: &Value| number(&p["healthy_instances"]).is_some_and(|n| n > 0);
            if !pools.is_empty() && pools.iter().all(healthy) {
                return pools.iter().filter_map(|p| p["name"].as_str()).collect::<Vec<_>>().join(", ");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("a pool of the router had no healthy instance after {within:?}: {last}")
}

/// A new user registers and logs in through the router: every hop of the env leads somewhere.
/// An answer of 503 is what a client is told to retry (a service that started before Redis
/// reconnects on the next request), so it is retried until a deadline: the attempts it took.
async fn sign_up(base: &str) -> Result<usize, String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let email = format!("k8s-{}@example.com", mesh_core::ids::new_id());
    let within = Duration::from_secs(30);
    let deadline = Instant::now() + within;
    let mut attempts = 0;
    for (path, body, want) in [
        (
            "register",
            json!({"email": email, "password": PASSWORD, "display_name": "Kube"}),
            StatusCode::CREATED,
        ),
        ("login", json!({"email": email, "password": PASSWORD}), StatusCode::OK),
    ] {
        loop {
            attempts += 1;
            let answer = http
                .post(format!("{base}/v1/auth/{path}"))
                .json(&body)
                .send()
                .await
                .map_err(|e| format!("{path} through the router: {e}"))?;
            let status = answer.status();
            let answer: Value = answer.json().await.unwrap_or(Value::Null);
            if status == want {
                if path == "login" && answer["access_token"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("login gave no access token: {answer}"));
                }
                break;
            }
            if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
                return Err(format!("{path} through the router (attempt {attempts}): {status} {answer}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(attempts)
}
