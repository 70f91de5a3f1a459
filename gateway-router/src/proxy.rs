//! The forwarding hop: a streaming reverse proxy over pooled keep-alive connections.
//!
//! Bodies stream in both directions (nothing is buffered). Hop-by-hop headers (RFC 9110
//! §7.6.1, including those named in `Connection`) are stripped both ways; `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `Forwarded` are set; the request id is kept if sane, else generated.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::classify::classify;
use crate::config::Config;

const REQUEST_ID: &str = "x-request-id";

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the proxy handler shares.
#[derive(Clone)]
pub struct Proxy {
    cfg: Arc<Config>,
    client: Client<HttpConnector, Body>,
    /// Round-robin position per pool. (Least-loaded balancing and health come with the router issue.)
    next: Arc<std::collections::BTreeMap<String, AtomicUsize>>,
}

impl Proxy {
    pub fn new(cfg: Arc<Config>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let next = Arc::new(cfg.pools.keys().map(|k| (k.clone(), AtomicUsize::new(0))).collect());
        Self { cfg, client, next }
    }

    fn pick(&self, pool: &str) -> Option<&str> {
        let instances = &self.cfg.pools.get(pool)?.instances;
        let turn = self.next.get(pool)?.fetch_add(1, Ordering::Relaxed);
        instances.get(turn % instances.len().max(1)).map(String::as_str)
    }
}

fn problem(status: StatusCode, slug: &str, title: &str, detail: &str, request_id: &str) -> Response {
    let body = mesh_core::problem::body(status.as_u16(), slug, title, detail, request_id).to_string();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mesh_core::problem::CONTENT_TYPE));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, id);
    }
    if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(mesh_core::ids::new_id)
}

/// Classifies and forwards one request.
pub async fn forward(
    State(proxy): State<Proxy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
) -> Response {
    let id = request_id(req.headers());
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let Some(pool) =
        classify(&proxy.cfg.rules, req.method(), host.as_deref(), req.uri().path(), req.headers())
    else {
        return problem(StatusCode::NOT_FOUND, "not-found", "Not found", "no route matches this path", &id);
    };
    let Some(instance) = proxy.pick(pool) else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "no gateway instance is configured",
            &id,
        );
    };
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(uri) = format!("http://{instance}{path_and_query}").parse::<Uri>() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request is invalid",
            "the request target is invalid",
            &id,
        );
    };
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    let client_ip = peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let forwarded = match peer.ip() {
        std::net::IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto=http"),
        std::net::IpAddr::V4(ip) => format!("for={ip};proto=http"),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.append(header::FORWARDED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }

    match proxy.client.request(req).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(request_id = %id, pool, instance, error = %e, "gateway instance failed");
            metrics::counter!("router_upstream_errors_total", "pool" => pool.to_owned()).increment(1);
            problem(
                StatusCode::BAD_GATEWAY,
                "bad-gateway",
                "Bad gateway",
                &format!("the {pool} gateway could not be reached"),
                &id,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret-hop".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-secret-hop", "1".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }
}
