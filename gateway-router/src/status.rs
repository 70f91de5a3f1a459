//! The router's own routes: `/mesh/status` (every pool and instance) and `/openapi.json` (the
//! gateways' documents merged into one).

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
                view
            }
            _ => json!({"instance": addr.to_string(), "pool": pool.name, "error": "no answer"}),
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

fn merge(into: &mut Value, document: &Value) {
    for section in ["paths"] {
        if let (Some(target), Some(source)) = (into[section].as_object_mut(), document[section].as_object()) {
            target.extend(source.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    if let (Some(target), Some(source)) =
        (into["components"]["schemas"].as_object_mut(), document["components"]["schemas"].as_object())
    {
        target.extend(source.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_merge_paths_and_schemas() {
        let mut into = json!({"paths": {}, "components": {"schemas": {}}});
        merge(&mut into, &json!({"paths": {"/a": {}}, "components": {"schemas": {"A": {}}}}));
        merge(&mut into, &json!({"paths": {"/b": {}}}));
        assert_eq!(into["paths"].as_object().unwrap().len(), 2);
        assert!(into["components"]["schemas"].get("A").is_some());
    }
}
