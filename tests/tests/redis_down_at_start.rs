//! Every component starts while Redis is down (the store tier fails open, the connection is made
//! on first use), says so in its readiness detail, serves, and uses Redis once it is back.
//!
//! The gateway and the router run as real processes pointed at a Redis that was killed before
//! they started; the services run in this process on the embedded store, so only the edge's
//! store is missing.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::store::StoreConfig;
use mesh_tests::process::{ServiceProcess, binary, http_get};
use mesh_tests::{RedisServer, unique_prefix, wait_until};
use meshctl::{Kind, Mesh, MeshOptions};
use serde_json::{Value, json};

/// Services on the embedded store, and a dead Redis (its port, nothing listening).
async fn services_and_a_dead_redis() -> (Mesh, RedisServer) {
    let mut redis = RedisServer::start().await.unwrap();
    redis.kill();
    let opts = MeshOptions {
        store: StoreConfig {
            redis_url: Some(format!("memory://{}", unique_prefix("down"))),
            ..StoreConfig::default()
        },
        fixed_ports: false,
        with_edge: false,
        configure_auth: Arc::new(|cfg: &mut auth_service::Config| {
            cfg.password_hash =
                auth_service::PasswordHashConfig { memory_kib: 256, iterations: 1, parallelism: 1 };
        }),
        ..MeshOptions::default()
    };
    let mesh = Mesh::start(opts).await.unwrap();
    mesh.wait_ready(Duration::from_secs(20)).await.unwrap();
    (mesh, redis)
}

fn endpoints(mesh: &Mesh, kind: Kind) -> String {
    mesh.components
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| format!("http://{}", c.addr))
        .collect::<Vec<_>>()
        .join(",")
}

fn identity_gateway(mesh: &Mesh, redis: &RedisServer, prefix: &str) -> ServiceProcess {
    let env = [
        ("REDIS_URL", redis.url()),
        ("MESH_STORE__KEY_PREFIX", prefix.to_owned()),
        ("MESH_SERVICES__AUTH__ENDPOINTS", endpoints(mesh, Kind::Auth)),
        ("MESH_SERVICES__USER__ENDPOINTS", endpoints(mesh, Kind::User)),
        ("MESH_SERVICES__QUOTA__ENDPOINTS", endpoints(mesh, Kind::Quota)),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServiceProcess::start(binary("identity-gateway"), &env).expect("the gateway starts without Redis")
}

async fn readiness(admin: SocketAddr) -> (u16, String) {
    http_get(admin, "/readyz").await.unwrap_or((0, String::new()))
}

/// Registers and logs in through `base`: an access token.
async fn token(http: &reqwest::Client, base: &str, email: &str) -> String {
    let body = json!({"email": email, "password": "correct horse battery", "display_name": "R"});
    let registered = http.post(format!("{base}/v1/auth/register")).json(&body).send().await.unwrap();
    assert_eq!(registered.status(), 201);
    let body = json!({"email": email, "password": "correct horse battery"});
    let tokens: Value =
        http.post(format!("{base}/v1/auth/login")).json(&body).send().await.unwrap().json().await.unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// Keys under `pattern` in the (restarted) Redis.
async fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starts_while_redis_is_down() {
    let (mesh, mut redis) = services_and_a_dead_redis().await;
    let prefix = unique_prefix("gw-down");
    let gateway = identity_gateway(&mesh, &redis, &prefix);
    let base = format!("http://{}", gateway.addr);
    // The gateway's own readiness (on its port: the store detail is the gateway's).
    let ready =
        wait_until(Duration::from_secs(10), || async { readiness(gateway.admin).await.0 == 200 }).await;
    let (code, detail) = readiness(gateway.admin).await;
    println!("gateway readiness with Redis down: {code} {detail:?}");
    assert!(ready);
    assert_eq!(code, 200, "{detail}");
    assert!(detail.contains("store: unreachable"), "{detail}");

    // It serves: authentication, profile, quota; the caches miss, nothing fails.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let token = token(&http, &base, "redis-down@example.com").await;
    let me = http.get(format!("{base}/v1/users/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);

    // Redis comes back: the gateway connects and remembers answers there.
    redis.restart().await.unwrap();
    let back = wait_until(Duration::from_secs(10), || async {
        readiness(gateway.admin).await.1.contains("store: redis ok")
    })
    .await;
    assert!(back, "readiness never saw the store again: {:?}", readiness(gateway.admin).await);
    let remembered = wait_until(Duration::from_secs(10), || {
        let (http, base, token, redis, prefix) =
            (http.clone(), base.clone(), token.clone(), &redis, prefix.clone());
        async move {
            let _ = http.get(format!("{base}/v1/users/me")).bearer_auth(&token).send().await;
            !keys(redis, &format!("{prefix}gw:lkg:*")).await.is_empty()
        }
    })
    .await;
    println!("gateway after Redis came back: readiness {:?}", readiness(gateway.admin).await.1);
    assert!(remembered, "no last-known-good snapshot was written once Redis was back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_starts_while_redis_is_down() {
    let (mesh, mut redis) = services_and_a_dead_redis().await;
    let prefix = unique_prefix("router-down");
    let gateway = identity_gateway(&mesh, &redis, &prefix);
    let router_env = [
        ("MESH_STORE__REDIS_URL", redis.url()),
        ("MESH_STORE__KEY_PREFIX", prefix.clone()),
        ("MESH_POOLS__IDENTITY__INSTANCES", gateway.addr.to_string()),
        ("MESH_POOLS__BUSINESS__INSTANCES", gateway.addr.to_string()),
    ];
    let router_env: Vec<(&str, &str)> = router_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let router = ServiceProcess::start(binary("gateway-router"), &router_env)
        .expect("the router starts without Redis");
    // Ready once it serves (the listening line comes a moment before).
    let ready =
        wait_until(Duration::from_secs(10), || async { readiness(router.admin).await.0 == 200 }).await;
    let (code, detail) = readiness(router.admin).await;
    assert!(ready, "{detail}");
    println!("router readiness with Redis down: {code} {detail:?}");
    assert_eq!(code, 200, "{detail}");
    assert!(detail.contains("store: unreachable"), "{detail}");

    // It forwards: the shared rate limit fails open.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let base = format!("http://{}", router.addr);
    let token = token(&http, &base, "router-redis-down@example.com").await;
    let me = http.get(format!("{base}/v1/users/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 200);

    // Redis comes back: the router counts clients there.
    redis.restart().await.unwrap();
    let counted = wait_until(Duration::from_secs(10), || {
        let (http, base, redis, prefix) = (http.clone(), base.clone(), &redis, prefix.clone());
        async move {
            let _ = http.get(format!("{base}/.well-known/jwks.json")).send().await;
            !keys(redis, &format!("{prefix}router:rate:*")).await.is_empty()
        }
    })
    .await;
    println!("router after Redis came back: readiness {:?}", readiness(router.admin).await.1);
    assert!(counted, "the router never counted a client in Redis once it was back");
}
