//! Revocation reaches every gateway within a second (docs/ARCHITECTURE.md §8): after a logout, a
//! refresh-token reuse or an API key deletion, the credential is refused on both identity and
//! both business gateways, addressed directly and through the router.
//!
//! Each gateway trusts "not revoked" for `jwt.revocation_cache_ttl` (500 ms by default), so every
//! credential is used on every gateway just before it is revoked, which makes each gateway hold
//! the freshest verdict it can: the worst case. The bound waited for is that TTL plus 500 ms for
//! the store read and the request; each test prints the time to refusal it measured.

mod support;

use std::time::{Duration, Instant};

use meshctl::Kind;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::TestMesh;

/// Within this a revoked credential must be refused everywhere: the default cache TTL plus
/// the time to read the store and answer.
fn bound() -> Duration {
    gateway::config::JwtConfig::default().revocation_cache_ttl + Duration::from_millis(500)
}

/// Somewhere a credential is presented: a base URL and a path it authenticates on.
#[derive(Clone, Debug)]
struct Target {
    name: String,
    base: String,
    path: &'static str,
}

/// The router for both domains, and every gateway replica directly.
fn targets(t: &TestMesh) -> Vec<Target> {
    let mut targets = vec![
        Target { name: "router → identity".into(), base: t.base.clone(), path: "/v1/users/me" },
        Target { name: "router → business".into(), base: t.base.clone(), path: "/v1/orders" },
    ];
    for (kind, path) in [(Kind::IdentityGateway, "/v1/users/me"), (Kind::BusinessGateway, "/v1/orders")] {
        for replica in 1..=2 {
            let component = t.mesh.get(kind, replica);
            targets.push(Target { name: component.name(), base: format!("http://{}", component.addr), path });
        }
    }
    targets
}

/// Asserts `auth` is accepted at every target (and so freshly cached as good there).
async fn assert_accepted_everywhere(t: &TestMesh, targets: &[Target], auth: &str) {
    for target in targets {
        let answer = t.call_at(&target.base, Method::GET, target.path, Some(auth), None, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{} {}: {:?}", target.name, target.path, answer.body);
    }
}

/// Polls every target at once until it refuses each of `credentials` (label, auth) with 401,
/// and returns how long each took from `since`; panics naming any still accepted after [`bound`].
async fn time_to_refusal(
    t: &TestMesh,
    targets: &[Target],
    credentials: &[(&str, &str)],
    since: Instant,
) -> Vec<Duration> {
    let mut polls = tokio::task::JoinSet::new();
    let mut cases = Vec::new();
    for (label, auth) in credentials {
        for target in targets {
            cases.push((label.to_string(), target.clone()));
            let (i, http, auth) = (cases.len() - 1, t.http.clone(), auth.to_string());
            let url = format!("{}{}", target.base, target.path);
            polls.spawn(async move {
                let refused = mesh_tests::wait_until(bound(), || {
                    let request = match auth.strip_prefix("key:") {
                        Some(key) => http.get(&url).header("x-api-key", key),
                        None => http.get(&url).bearer_auth(&auth),
                    };
                    async move { request.send().await.is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED) }
                })
                .await;
                (i, refused.then(|| since.elapsed()))
            });
        }
    }
    let mut took = vec![None; cases.len()];
    while let Some(joined) = polls.join_next().await {
        let (i, elapsed) = joined.expect("poll task");
        took[i] = elapsed;
    }
    let mut out = Vec::new();
    for ((label, target), elapsed) in cases.iter().zip(took) {
        let Some(elapsed) = elapsed else {
            panic!(
                "{label} at {} {}: still accepted {:?} after the revocation",
                target.name,
                target.path,
                bound()
            );
        };
        println!("  {label:<22} {:<20} {:<13} refused after {elapsed:?}", target.name, target.path);
        out.push(elapsed);
    }
    out
}

/// Asserts the refusal on every target is a 401 problem with `WWW-Authenticate`, saying why.
async fn assert_refused_everywhere(t: &TestMesh, targets: &[Target], auth: &str, why: &str) {
    for target in targets {
        let answer = t.call_at(&target.base, Method::GET, target.path, Some(auth), None, &[]).await;
        answer.assert_problem(401);
        assert_eq!(answer.header("www-authenticate"), "Bearer", "{}", target.name);
        let detail = answer.body["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{} {}: {detail:?}", target.name, target.path);
    }
}

fn slowest(took: &[Duration]) -> Duration {
    took.iter().copied().max().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_access_token_at_once() {
    let t = TestMesh::start().await;
    let targets = targets(&t);
    let (_, token, refresh) = t.user("logout@example.com").await;
    let (_, other, _) = t.user("stays@example.com").await;
    assert_accepted_everywhere(&t, &targets, &token).await;
    assert_accepted_everywhere(&t, &targets, &other).await;

    // Logged out on each identity gateway in turn: a session per gateway.
    let mut worst = Duration::ZERO;
    for replica in 1..=2 {
        let gateway = format!("http://{}", t.mesh.get(Kind::IdentityGateway, replica).addr);
        let token = match replica {
            1 => token.clone(),
            _ => t.login("logout@example.com").await.body["access_token"].as_str().unwrap().to_owned(),
        };
        assert_accepted_everywhere(&t, &targets, &token).await;
        let logout = t.call_at(&gateway, Method::POST, "/v1/auth/logout", Some(&token), None, &[]).await;
        assert_eq!(logout.status, StatusCode::NO_CONTENT, "{:?}", logout.body);
        let logged_out = Instant::now();
        println!("logout on identity-gateway-{replica}; time to refusal (bound {:?}):", bound());
        let took = time_to_refusal(&t, &targets, &[("access token", &token)], logged_out).await;
        worst = worst.max(slowest(&took));
        assert_refused_everywhere(&t, &targets, &token, "revoked").await;
    }
    println!("slowest refusal after a logout: {worst:?}");

    // Through the router too; and the session's refresh token is dead with it.
    let login = t.login("logout@example.com").await;
    let token = login.body["access_token"].as_str().unwrap().to_owned();
    assert_accepted_everywhere(&t, &targets, &token).await;
    let logout = t.call(Method::POST, "/v1/auth/logout", Some(&token), None).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{:?}", logout.body);
    println!("logout through the router; time to refusal:");
    let took = time_to_refusal(&t, &targets, &[("access token", &token)], Instant::now()).await;
    println!("logout through the router: slowest refusal {:?}", slowest(&took));
    let refreshed =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    refreshed.assert_problem(401);

    // Only that session: another user's token still works everywhere.
    assert_accepted_everywhere(&t, &targets, &other).await;
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_revokes_its_access_tokens() {
    let t = TestMesh::start().await;
    let targets = targets(&t);
    let (_, first_access, first_refresh) = t.user("reuse@example.com").await;
    let rotated =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": first_refresh}))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let second_access = rotated.body["access_token"].as_str().unwrap().to_owned();
    let second_refresh = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    // Another session of the same user is not touched by the reuse.
    let other_session = t.login("reuse@example.com").await.body["access_token"].as_str().unwrap().to_owned();
    for token in [&first_access, &second_access, &other_session] {
        assert_accepted_everywhere(&t, &targets, token).await;
    }

    let reused =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": first_refresh}))).await;
    reused.assert_problem(401);
    let revoked_at = Instant::now();
    println!("refresh token reused; time to refusal of the session's access tokens (bound {:?}):", bound());
    let tokens = [("first access token", first_access.as_str()), ("rotated access token", &second_access)];
    let worst = slowest(&time_to_refusal(&t, &targets, &tokens, revoked_at).await);
    for (_, token) in tokens {
        assert_refused_everywhere(&t, &targets, token, "revoked").await;
    }
    println!("slowest refusal after a refresh-token reuse: {worst:?}");
    let newest =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": second_refresh}))).await;
    newest.assert_problem(401);
    assert_accepted_everywhere(&t, &targets, &other_session).await;
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_api_key_is_refused_on_every_gateway_within_a_second_even_while_auth_is_out() {
    let mut t = TestMesh::start().await;
    let targets = targets(&t);
    let (_, token, _) = t.user("keys@example.com").await;
    let mut keys = Vec::new();
    for name in ["deleted", "kept"] {
        let created =
            t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": name}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let key = format!("key:{}", created.body["key"].as_str().unwrap());
        keys.push((created.body["id"].as_str().unwrap().to_owned(), key));
    }
    let [(deleted_id, deleted), (_, kept)] = <[_; 2]>::try_from(keys).unwrap();
    // Verified everywhere, so the shared cache and the last-known-good snapshot hold both.
    assert_accepted_everywhere(&t, &targets, &deleted).await;
    assert_accepted_everywhere(&t, &targets, &kept).await;

    let gateway = format!("http://{}", t.mesh.get(Kind::IdentityGateway, 2).addr);
    let path = format!("/v1/auth/api-keys/{deleted_id}");
    let deletion = t.call_at(&gateway, Method::DELETE, &path, Some(&token), None, &[]).await;
    assert_eq!(deletion.status, StatusCode::NO_CONTENT, "{:?}", deletion.body);
    println!("API key deleted on identity-gateway-2; time to refusal (bound {:?}):", bound());
    let took = time_to_refusal(&t, &targets, &[("deleted key", &deleted)], Instant::now()).await;
    println!("slowest refusal after a key deletion: {:?}", slowest(&took));
    assert_refused_everywhere(&t, &targets, &deleted, "API key").await;
    assert_accepted_everywhere(&t, &targets, &kept).await;

    // Auth goes away: the kept key is still answered from its verification, the deleted one is
    // not (nothing of it is left to answer from), on every gateway.
    for replica in 1..=2 {
        t.mesh.get_mut(Kind::Auth, replica).stop().await.unwrap();
    }
    for target in &targets {
        let answer = t.call_at(&target.base, Method::GET, target.path, Some(&deleted), None, &[]).await;
        println!("  auth out: deleted key at {:<20} {}", target.name, answer.status);
        assert!(
            answer.status == StatusCode::UNAUTHORIZED || answer.status == StatusCode::SERVICE_UNAVAILABLE,
            "{}: a deleted key answered {} while auth is out: {:?}",
            target.name,
            answer.status,
            answer.body
        );
        assert!(answer.header("x-mesh-fallback").is_empty(), "{}: never from a snapshot", target.name);
    }
    assert_accepted_everywhere(&t, &targets, &kept).await;
    t.mesh.stop().await.unwrap();
}
