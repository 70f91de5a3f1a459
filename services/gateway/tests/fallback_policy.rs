//! The fallback policy, driven with `oneshot` (no socket) through the transport seam
//! (`Clients::with`): each service is an in-process tonic server behind a [`Switch`] that makes
//! it answer a chosen status, hang, or answer slowly.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use gateway::clients::{Clients, Service, Transport, transport};
use gateway::{Config, Domain};
use http_body_util::BodyExt;
use mesh_core::admin::Readiness;
use mesh_core::shutdown::Drain;
use mesh_core::store::Store;
use mesh_proto::articles::articles_service_server::ArticlesServiceServer;
use mesh_proto::auth::{self as auth_pb, auth_service_server};
use mesh_proto::quota::quota_service_server::QuotaServiceServer;
use mesh_proto::user::user_service_server::UserServiceServer;
use tonic::Code;
use tower::ServiceExt;

/// Every service call's deadline in these tests.
const DEADLINE: Duration = Duration::from_millis(300);

/// What a switched service does with the next call.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Live,
    /// Answers this status at once (trailers-only, as a failing server does).
    Fail(Code),
    /// Never answers.
    Hang,
    /// Answers live, after this long.
    Slow(Duration),
}

/// Flips a service between live, failing, hung and slow.
#[derive(Clone)]
struct Switch(Arc<Mutex<Mode>>);

impl Switch {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Mode::Live)))
    }

    fn set(&self, mode: Mode) {
        *self.0.lock().unwrap() = mode;
    }

    /// `server` behind this switch, as a transport for the gateway's handle.
    fn over<S>(&self, server: S) -> Transport
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let mode = self.0.clone();
        transport(tower::service_fn(move |request: http::Request<tonic::body::Body>| {
            let server = server.clone();
            let mode = *mode.lock().unwrap();
            async move {
                match mode {
                    Mode::Live => server.oneshot(request).await,
                    Mode::Fail(code) => Ok(tonic::Status::new(code, "injected").into_http()),
                    Mode::Hang => std::future::pending().await,
                    Mode::Slow(delay) => {
                        tokio::time::sleep(delay).await;
                        server.oneshot(request).await
                    }
                }
            }
        }))
    }
}

/// Auth as far as these tests need it: the JWKS of one test key, and logins.
struct FakeAuth {
    x: String,
}

fn unimplemented<T>() -> Result<tonic::Response<T>, tonic::Status> {
    Err(tonic::Status::unimplemented("not in this fake"))
}

#[tonic::async_trait]
impl auth_service_server::AuthService for FakeAuth {
    async fn register(
        &self,
        _: tonic::Request<auth_pb::RegisterRequest>,
    ) -> Result<tonic::Response<auth_pb::RegisterResponse>, tonic::Status> {
        unimplemented()
    }
    async fn login(
        &self,
        _: tonic::Request<auth_pb::LoginRequest>,
    ) -> Result<tonic::Response<auth_pb::TokenPair>, tonic::Status> {
        Ok(tonic::Response::new(auth_pb::TokenPair {
            access_token: "a".into(),
            refresh_token: "r".into(),
            token_type: "Bearer".into(),
            expires_in: 600,
        }))
    }
    async fn refresh(
        &self,
        _: tonic::Request<auth_pb::RefreshRequest>,
    ) -> Result<tonic::Response<auth_pb::TokenPair>, tonic::Status> {
        unimplemented()
    }
    async fn logout(
        &self,
        _: tonic::Request<auth_pb::LogoutRequest>,
    ) -> Result<tonic::Response<auth_pb::LogoutResponse>, tonic::Status> {
        unimplemented()
    }
    async fn create_api_key(
        &self,
        _: tonic::Request<auth_pb::CreateApiKeyRequest>,
    ) -> Result<tonic::Response<auth_pb::CreateApiKeyResponse>, tonic::Status> {
        unimplemented()
    }
    async fn list_api_keys(
        &self,
        _: tonic::Request<auth_pb::ListApiKeysRequest>,
    ) -> Result<tonic::Response<auth_pb::ListApiKeysResponse>, tonic::Status> {
        unimplemented()
    }
    async fn delete_api_key(
        &self,
        _: tonic::Request<auth_pb::DeleteApiKeyRequest>,
    ) -> Result<tonic::Response<auth_pb::DeleteApiKeyResponse>, tonic::Status> {
        unimplemented()
    }
    async fn verify_api_key(
        &self,
        _: tonic::Request<auth_pb::VerifyApiKeyRequest>,
    ) -> Result<tonic::Response<auth_pb::Principal>, tonic::Status> {
        unimplemented()
    }
    async fn get_jwks(
        &self,
        _: tonic::Request<auth_pb::GetJwksRequest>,
    ) -> Result<tonic::Response<auth_pb::Jwks>, tonic::Status> {
        let key = auth_pb::Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: self.x.clone(),
            kid: "k1".into(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
        };
        Ok(tonic::Response::new(auth_pb::Jwks {
            keys: vec![key],
            issuer: "mesh-auth".into(),
            audience: "mesh".into(),
        }))
    }
}

/// One gateway over switched in-process services, and a token it accepts.
struct Mesh {
    app: axum::Router,
    auth: Switch,
    user: Switch,
    quota: Switch,
    articles: Switch,
    token: String,
    user_id: String,
}

async fn mesh(domain: Domain) -> Mesh {
    use base64::Engine;
    let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    let user_id = mesh_core::ids::new_id();
    let token = token(&signing, &user_id);

    let mut cfg = Config::for_domain(domain);
    for svc in
        [&mut cfg.services.auth, &mut cfg.services.user, &mut cfg.services.quota, &mut cfg.services.articles]
    {
        svc.request_timeout = DEADLINE;
    }
    // Every read asks its service, so each test chooses what the service answers.
    cfg.response_cache_ttl = Duration::ZERO;
    let (auth, user, quota, articles) = (Switch::new(), Switch::new(), Switch::new(), Switch::new());
    let clients = Clients::with(&cfg.services, |service| match service {
        Service::Auth => {
            Some(auth.over(auth_service_server::AuthServiceServer::new(FakeAuth { x: x.clone() })))
        }
        Service::User => Some(user.over(UserServiceServer::new(user_service::UserApi::new(Store::memory())))),
        Service::Quota => Some(quota.over(QuotaServiceServer::new(quota_service::QuotaApi::new(
            quota_service::Config::default(),
            Store::memory(),
        )))),
        Service::Articles => Some(articles.over(ArticlesServiceServer::new(
            articles_service::ArticlesApi::new(articles_service::Config::default(), Store::memory()),
        ))),
        _ => None,
    });
    let state = gateway::state_with(cfg, clients).await.unwrap();
    let readiness = Readiness::new(Drain::new());
    readiness.set_started();
    Mesh { app: gateway::app(state, "test-gw", readiness), auth, user, quota, articles, token, user_id }
}

fn token(signing: &ed25519_dalek::SigningKey, user_id: &str) -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let now = mesh_core::ids::unix_now();
    let claims = serde_json::json!({
        "sub": user_id, "email": "ada@example.com", "roles": ["user"], "iss": "mesh-auth",
        "aud": "mesh", "nbf": now, "exp": now + 600, "sid": "s1",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let pem = signing.to_pkcs8_pem(Default::default()).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: serde_json::Value,
    took: Duration,
}

impl Mesh {
    async fn send(&self, request: Request<Body>) -> Answer {
        let started = Instant::now();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer { status, headers, body, took: started.elapsed() }
    }

    async fn get(&self, path: &str) -> Answer {
        let request = Request::get(path).header(header::AUTHORIZATION, format!("Bearer {}", self.token));
        self.send(request.body(Body::empty()).unwrap()).await
    }
}

fn is_fallback(answer: &Answer) -> bool {
    answer.headers.contains_key("x-mesh-fallback")
}

#[tokio::test]
async fn users_me_answers_from_last_known_good_while_the_user_service_is_out() {
    let mesh = mesh(Domain::Identity).await;
    let live = mesh.get("/v1/users/me").await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);
    assert!(!is_fallback(&live));
    assert_eq!(live.body["user_id"], mesh.user_id.as_str());

    for (mode, upstream) in [
        (Mode::Fail(Code::Unavailable), "503"),
        (Mode::Fail(Code::Internal), "500"),
        (Mode::Fail(Code::DeadlineExceeded), "504"),
        (Mode::Hang, "504"),
    ] {
        mesh.user.set(mode);
        let answer = mesh.get("/v1/users/me").await;
        assert_eq!(answer.status, StatusCode::OK, "{mode:?}: {}", answer.body);
        assert_eq!(answer.headers["x-mesh-fallback"], "cache", "{mode:?}");
        assert!(answer.headers.contains_key(header::AGE), "{mode:?}");
        let cache_status = answer.headers["cache-status"].to_str().unwrap();
        assert!(cache_status.contains(&format!("fwd-status={upstream}")), "{mode:?}: {cache_status}");
        assert_eq!(answer.body["user_id"], mesh.user_id.as_str(), "{mode:?}: the user's own profile");
    }
}

#[tokio::test]
async fn a_hung_user_service_is_cut_at_its_deadline() {
    let mesh = mesh(Domain::Identity).await;
    assert_eq!(mesh.get("/v1/users/me").await.status, StatusCode::OK);
    mesh.user.set(Mode::Hang);
    let answer = mesh.get("/v1/users/me").await;
    assert_eq!(answer.headers["x-mesh-fallback"], "cache");
    assert!(answer.took >= DEADLINE, "answered before the deadline: {:?}", answer.took);
    assert!(answer.took < DEADLINE * 5, "not cut at the deadline: {:?}", answer.took);
}

#[tokio::test]
async fn a_slow_service_answers_live_inside_its_deadline_and_is_cut_past_it() {
    let mesh = mesh(Domain::Identity).await;
    assert_eq!(mesh.get("/v1/users/me").await.status, StatusCode::OK);
    mesh.user.set(Mode::Slow(DEADLINE / 3));
    let slow = mesh.get("/v1/users/me").await;
    assert_eq!(slow.status, StatusCode::OK);
    assert!(!is_fallback(&slow), "a slow answer inside the deadline is live");
    mesh.user.set(Mode::Slow(DEADLINE * 10));
    let too_slow = mesh.get("/v1/users/me").await;
    assert_eq!(too_slow.headers["x-mesh-fallback"], "cache");
    assert!(too_slow.took < DEADLINE * 5, "not cut at the deadline: {:?}", too_slow.took);
}

#[tokio::test]
async fn a_service_refusal_is_answered_as_is_never_from_cache() {
    let mesh = mesh(Domain::Identity).await;
    assert_eq!(mesh.get("/v1/users/me").await.status, StatusCode::OK, "remembered");
    for (code, expected) in
        [(Code::NotFound, 404), (Code::PermissionDenied, 403), (Code::InvalidArgument, 400)]
    {
        mesh.user.set(Mode::Fail(code));
        let answer = mesh.get("/v1/users/me").await;
        assert_eq!(answer.status.as_u16(), expected, "{code:?}: {}", answer.body);
        assert!(!is_fallback(&answer), "{code:?}: an answer about the request is never a fallback");
        assert!(!answer.headers.contains_key("x-mesh-fault"), "{code:?}: not the service's fault");
    }
}

#[tokio::test]
async fn a_profile_never_read_is_503_with_retry_after_during_an_outage() {
    let mesh = mesh(Domain::Identity).await;
    mesh.user.set(Mode::Fail(Code::Unavailable));
    let answer = mesh.get("/v1/users/me").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert_eq!(answer.headers["x-mesh-fault"], "service");
    assert!(!is_fallback(&answer));
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn login_during_an_auth_outage_is_503_and_never_cached() {
    let mesh = mesh(Domain::Identity).await;
    let login = || {
        Request::post("/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"email":"ada@example.com","password":"correct horse battery"}"#))
            .unwrap()
    };
    let live = mesh.send(login()).await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);
    mesh.auth.set(Mode::Fail(Code::Unavailable));
    let answer = mesh.send(login()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert!(!is_fallback(&answer), "a login is never answered from a cache");
    assert!(answer.body.get("access_token").is_none());
}

#[tokio::test]
async fn business_reads_degrade_while_their_service_is_out() {
    let mesh = mesh(Domain::Business).await;
    let live = mesh.get("/v1/articles?limit=5").await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.body);
    assert!(!is_fallback(&live));

    for mode in [Mode::Fail(Code::Unavailable), Mode::Hang] {
        mesh.articles.set(mode);
        let answer = mesh.get("/v1/articles?limit=5").await;
        assert_eq!(answer.status, StatusCode::OK, "{mode:?}: {}", answer.body);
        assert_eq!(answer.headers["x-mesh-fallback"], "degraded", "{mode:?}");
        assert_eq!(answer.body["degraded"], true, "{mode:?}");
    }
    mesh.articles.set(Mode::Fail(Code::Unavailable));
    let never_read = mesh.get("/v1/articles?q=tea").await;
    assert_eq!(never_read.status, StatusCode::SERVICE_UNAVAILABLE, "{}", never_read.body);
    assert!(never_read.headers.contains_key(header::RETRY_AFTER));
    mesh.articles.set(Mode::Fail(Code::InvalidArgument));
    let refused = mesh.get("/v1/articles?limit=5").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "only outages degrade");
}

#[tokio::test]
async fn a_metering_outage_is_metered_locally_and_marked_degraded() {
    let mesh = mesh(Domain::Identity).await;
    let live = mesh.get("/v1/users/me").await;
    assert_eq!(live.headers["ratelimit-limit"], "1000", "metered by the quota service");
    assert!(!is_fallback(&live));
    mesh.quota.set(Mode::Fail(Code::Unavailable));
    let answer = mesh.get("/v1/users/me").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["x-mesh-fallback"], "degraded", "counted by the gateway's local limit");
    assert!(answer.headers.contains_key("ratelimit-remaining"));
    mesh.user.set(Mode::Fail(Code::Unavailable));
    let cached = mesh.get("/v1/users/me").await;
    assert_eq!(cached.headers["x-mesh-fallback"], "cache", "the handler's mark says more about the body");
}
