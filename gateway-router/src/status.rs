//! The router's own routes: `/mesh/status` (every pool and instance, each pool's recent
//! history, and with `?view=full` each gateway's view of its services) and `/openapi.json` (the
//! gateways' documents merged into one). The page (`assets/status.html`) draws the topology and
//! the charts from that JSON; docs/status-page.md describes both.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::pool::InstanceStatus;
use crate::state::RouterState;

/// The page for people: no external assets, refreshes itself from the JSON view.
const PAGE: &str = include_str!("../assets/status.html");

/// `GET /mesh/status`: the HTML page for browsers (`Accept: text/html`), JSON otherwise or
/// with `?format=json`.
pub async fn status_page(
    State(state): State<Arc<RouterState>>,
    headers: http::HeaderMap,
    uri: http::Uri,
) -> axum::response::Response {
    let wants_html = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
        && !uri.query().is_some_and(|q| q.contains("format=json"));
    if wants_html {
        return axum::response::Html(PAGE).into_response();
    }
    let Json(mut view) = status(State(state.clone())).await;
    if uri.query().is_some_and(|q| q.contains("view=full")) {
        view["gateways"] = Value::Array(gateway_views(&state).await);
    }
    Json(view).into_response()
}

/// Each healthy gateway's own view of its services (`/mesh/services`), asked concurrently.
async fn gateway_views(state: &RouterState) -> Vec<Value> {
    let asks = state.pools.values().flat_map(|pool| {
        pool.instances()
            .iter()
            .filter(|i| i.is_eligible())
            .map(|i| (pool.clone(), i.addr))
            .collect::<Vec<_>>()
    });
    let asks = asks.map(|(pool, addr)| async move {
        let fetched = async {
            let request = Request::get(format!("http://{addr}/mesh/services")).body(Body::empty()).ok()?;
            let response = pool.client.request(request).await.ok()?;
            let bytes = response.into_body().collect().await.ok()?.to_bytes();
            serde_json::from_slice::<Value>(&bytes).ok()
        };
        match tokio::time::timeout(Duration::from_millis(500), fetched).await {
            Ok(Some(mut view)) => {
                view["pool"] = json!(pool.name);
                // The router's name of the instance, which the page's topology joins on.
                view["addr"] = json!(addr.to_string());
                view
            }
            _ => json!({"instance": addr.to_string(), "addr": addr.to_string(), "pool": pool.name, "error": "no answer"}),
        }
    });
    futures_util::future::join_all(asks).await
}

/// The JSON view of every pool and instance.
pub async fn status(State(state): State<Arc<RouterState>>) -> Json<Value> {
    let pools: Vec<Value> = state
        .pools
        .values()
        .map(|pool| {
            let instances: Vec<InstanceStatus> = pool.instances().iter().map(|i| i.status()).collect();
            let healthy = instances.iter().filter(|i| i.healthy).count();
            json!({
                "name": pool.name,
                "healthy_instances": healthy,
                "in_flight": pool.in_flight(),
                "max_concurrency": pool.max_concurrency,
                "retry_budget": {
                    "ratio": state.cfg.retry.budget_ratio,
                    "min_per_second": state.cfg.retry.budget_min_per_second,
                    "retries": pool.retries.load(std::sync::atomic::Ordering::Relaxed),
                    "refused": pool.retries_refused.load(std::sync::atomic::Ordering::Relaxed),
                },
                "instances": instances,
                "history": pool.counters.history.view(std::time::Instant::now()),
            })
        })
        .collect();
    Json(json!({ "pools": pools }))
}

/// `GET /openapi.json`: every pool's document fetched from a healthy instance and merged.
pub async fn openapi(State(state): State<Arc<RouterState>>) -> impl IntoResponse {
    let mut merged = json!({
        "openapi": "3.1.0",
        "info": {"title": "mesh API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Every route of the mesh, as the router serves it."},
        "paths": {},
        "components": {"schemas": {}},
    });
    for pool in state.pools.values() {
        let Some(instance) = pool.pick(&[]) else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"detail": format!("no healthy {} gateway to ask", pool.name)})),
            );
        };
        let Ok(request) = Request::get(format!("http://{}/openapi.json", instance.addr)).body(Body::empty())
        else {
            continue;
        };
        let fetched = async {
            let response = pool.client.request(request).await.ok()?;
            let bytes = response.into_body().collect().await.ok()?.to_bytes();
            serde_json::from_slice::<Value>(&bytes).ok()
        };
        let Ok(Some(document)) = tokio::time::timeout(Duration::from_secs(2), fetched).await else {
            return (
                StatusCode::BAD_GATEWAY,
                Json(json!({"detail": format!("the {} gateway's document could not be read", pool.name)})),
            );
        };
        merge(&mut merged, &document);
    }
    (StatusCode::OK, Json(merged))
}

/// Adds one gateway's document to the merged one: its paths, and every section of its
/// components (schemas, headers, security schemes), each operation also documenting what the
/// router itself answers in front of it ([`router_answers`]).
fn merge(into: &mut Value, document: &Value) {
    if let (Some(target), Some(source)) = (into["paths"].as_object_mut(), document["paths"].as_object()) {
        for (path, item) in source {
            let mut item = item.clone();
            if let Some(operations) = item.as_object_mut() {
                operations.values_mut().for_each(router_answers);
            }
            target.insert(path.clone(), item);
        }
    }
    if let Some(sections) = document["components"].as_object() {
        for (section, entries) in sections {
            let Some(entries) = entries.as_object() else { continue };
            let target = into["components"]
                .as_object_mut()
                .map(|c| c.entry(section.clone()).or_insert_with(|| json!({})));
            if let Some(target) = target.and_then(Value::as_object_mut) {
                target.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
}

/// What the router answers itself, in front of every route: its problems
/// (`proxy::Refusal::problem`), documented on each operation that does not already say more.
fn router_answers(operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    let mut answers = vec![
        (400, "the request's framing or target is invalid"),
        (429, "this client address is sending faster than the router allows; see `Retry-After`"),
        (431, "the request's headers are larger, or more, than the router accepts"),
        (502, "the gateway failed before answering; see `Retry-After`"),
        (503, "no healthy gateway for this route, or they are at capacity; see `Retry-After`"),
        (504, "the gateway did not answer in time"),
    ];
    if has_body {
        answers.push((408, "the request body did not arrive in time"));
        answers.push((413, "the body is larger than the router accepts"));
    }
    let Some(responses) = operation["responses"].as_object_mut() else { return };
    for (status, description) in answers {
        responses
            .entry(status.to_string())
            .or_insert_with(|| mesh_core::problem::openapi_response(status, description));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_merge_paths_and_schemas() {
        let mut into = json!({"paths": {}, "components": {"schemas": {}}});
        merge(&mut into, &json!({"paths": {"/a": {}}, "components": {"schemas": {"A": {}}}}));
        merge(
            &mut into,
            &json!({"paths": {"/b": {"post": {"requestBody": {}, "responses": {"200": {}}}}},
            "components": {"securitySchemes": {"bearer": {}}}}),
        );
        assert_eq!(into["paths"].as_object().unwrap().len(), 2);
        assert!(into["components"]["schemas"].get("A").is_some());
        assert!(into["components"]["securitySchemes"].get("bearer").is_some(), "every section merges");
        let responses = &into["paths"]["/b"]["post"]["responses"];
        for status in ["200", "413", "429", "503"] {
            assert!(responses.get(status).is_some(), "{status}: {responses}");
        }
    }
}
