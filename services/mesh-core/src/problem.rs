//! RFC 9457 problem details, the one error body of every HTTP edge of the mesh.

/// The JSON body of a problem: `type` is `/problems/<slug>`, `instance` the request id.
pub fn body(status: u16, slug: &str, title: &str, detail: &str, request_id: &str) -> serde_json::Value {
    serde_json::json!({
        "type": format!("/problems/{slug}"),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request_id,
    })
}

/// `application/problem+json`.
pub const CONTENT_TYPE: &str = "application/problem+json";
