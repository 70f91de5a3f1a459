//! The end-to-end harness: the whole mesh (router, two replicas of each gateway and service)
//! on port-0 listeners in this process, over a real `redis-server`, and an HTTP client.

#![allow(dead_code)]

pub(crate) mod chaos;
pub(crate) mod containers;
pub(crate) mod identity;
pub(crate) mod manifests;
pub(crate) mod processes;
pub(crate) mod services_chaos;
pub(crate) mod sse;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use mesh_core::store::StoreConfig;
use mesh_tests::{RedisServer, unique_prefix};
use meshctl::{Kind, Mesh, MeshOptions};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const ADMIN_EMAIL: &str = "admin@example.com";
pub(crate) const KID: &str = "test-key-1";

/// A running mesh and what tests need to talk to it.
pub(crate) struct TestMesh {
    pub(crate) mesh: Mesh,
    pub(crate) redis: RedisServer,
    pub(crate) http: reqwest::Client,
    /// `http://<router>`.
    pub(crate) base: String,
    /// `http://<router admin>`: `/metrics`, `/mesh/status`.
    pub(crate) admin_base: String,
    /// The PKCS#8 PEM of the key auth signs with, so tests can mint tokens of their own.
    pub(crate) signing_pem: String,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts an RFC 9457 problem with `status` whose instance is the request id.
    pub(crate) fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.header("content-type"), "application/problem+json", "{:?}", self.body);
        assert_eq!(self.body["status"], status);
        assert_eq!(self.body["instance"].as_str().unwrap(), self.header("x-request-id"));
        assert!(!self.body["detail"].as_str().unwrap_or("").is_empty());
    }
}

/// Options of a test mesh beyond the defaults.
#[derive(Default)]
pub(crate) struct Setup {
    /// Requests allowed per window on the default plan (default: plenty).
    pub(crate) quota_limit: Option<u64>,
}

impl TestMesh {
    pub(crate) async fn start() -> Self {
        Self::start_with(Setup::default()).await
    }

    pub(crate) async fn start_with(setup: Setup) -> Self {
        Self::start_customised(setup, |_, _| {}).await
    }

    /// Like [`TestMesh::start_with`]; `customise` adjusts the mesh options last. It sees the
    /// Redis server, e.g. to give the gateways a store other than the services'.
    pub(crate) async fn start_customised(
        setup: Setup,
        customise: impl FnOnce(&mut MeshOptions, &RedisServer),
    ) -> Self {
        let redis = RedisServer::start().await.expect("redis-server starts");
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let signing_pem = signing.to_pkcs8_pem(Default::default()).expect("pem").to_string();
        let pem = signing_pem.clone();
        let quota_limit = setup.quota_limit.unwrap_or(100_000);
        let mut opts = MeshOptions {
            store: StoreConfig {
                redis_url: Some(redis.url()),
                key_prefix: unique_prefix("e2e"),
                ..StoreConfig::default()
            },
            replicas: 2,
            fixed_ports: false,
            configure_auth: Arc::new(move |cfg: &mut auth_service::Config| {
                cfg.admin_emails = vec![ADMIN_EMAIL.into()];
                // Cheap but still argon2id: the production cost makes debug builds slow.
                cfg.password_hash =
                    auth_service::PasswordHashConfig { memory_kib: 256, iterations: 1, parallelism: 1 };
                cfg.signing_keys = vec![auth_service::SigningKeyConfig {
                    kid: KID.into(),
                    private_key_pem: Some(pem.clone()),
                    private_key_file: None,
                }];
            }),
            configure_quota: Arc::new(move |cfg: &mut quota_service::Config| {
                let window = Duration::from_secs(3600);
                cfg.plans = BTreeMap::from([
                    ("free".into(), quota_service::Plan { limit: quota_limit, window }),
                    ("pro".into(), quota_service::Plan { limit: quota_limit * 10, window }),
                ]);
            }),
            ..MeshOptions::default()
        };
        customise(&mut opts, &redis);
        let mesh = Mesh::start(opts).await.expect("mesh starts");
        mesh.wait_ready(Duration::from_secs(20)).await.expect("mesh ready");
        let base = format!("http://{}", mesh.addr(Kind::Router));
        let admin_base = format!("http://{}", mesh.router_admin.expect("the router runs"));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        Self { mesh, redis, http, base, admin_base, signing_pem }
    }

    /// Sends a request through the router. `auth` is a bearer token or `key:<api key>`.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(method, path, auth, body, &[]).await
    }

    pub(crate) async fn call_with(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.call_at(&self.base, method, path, auth, body, headers).await
    }

    /// Like [`TestMesh::call_with`] against any base URL (e.g. a gateway directly).
    pub(crate) async fn call_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.http.request(method, format!("{base}{path}"));
        match auth {
            Some(key) if key.starts_with("key:") => req = req.header("x-api-key", &key[4..]),
            Some(token) => req = req.bearer_auth(token),
            None => {}
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, headers, body }
    }

    /// Registers `email` and logs in: (user id, access token, refresh token).
    pub(crate) async fn user(&self, email: &str) -> (String, String, String) {
        let registered = self
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({"email": email, "password": PASSWORD, "display_name": "Test"})),
            )
            .await;
        assert_eq!(registered.status, StatusCode::CREATED, "{:?}", registered.body);
        let tokens = self.login(email).await;
        (
            registered.body["user_id"].as_str().unwrap().to_owned(),
            tokens.body["access_token"].as_str().unwrap().to_owned(),
            tokens.body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) async fn login(&self, email: &str) -> Answer {
        let answer = self
            .call(Method::POST, "/v1/auth/login", None, Some(json!({"email": email, "password": PASSWORD})))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer
    }

    /// Creates an article as the admin (registering the admin first if needed): its id.
    pub(crate) async fn article(
        &self,
        admin_token: &str,
        title: &str,
        price_cents: i64,
        stock: i64,
    ) -> String {
        let created = self
            .call(
                Method::POST,
                "/v1/articles",
                Some(admin_token),
                Some(json!({"title": title, "body": "A fine thing.", "price_cents": price_cents, "stock": stock})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        created.body["id"].as_str().unwrap().to_owned()
    }

    /// Mints an access token signed with the mesh's real key, with `claims` merged over valid ones.
    pub(crate) fn mint(&self, kid: &str, overrides: Value) -> String {
        let now = mesh_core::ids::unix_now();
        let mut claims = json!({
            "sub": mesh_core::ids::new_id(), "email": "minted@example.com", "roles": ["user"],
            "sid": mesh_core::ids::new_id(), "iss": "mesh-auth", "aud": "mesh",
            "iat": now, "nbf": now, "exp": now + 600, "jti": mesh_core::ids::new_id(),
        });
        for (k, v) in overrides.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let key = jsonwebtoken::EncodingKey::from_ed_pem(self.signing_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}
