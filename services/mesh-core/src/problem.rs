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

/// The OpenAPI response object of a problem answer with `status`: the problem+json body
/// (`#/components/schemas/Problem`) and the headers every problem carries, `x-request-id`, and
/// `Retry-After` on 429, 502 and 503 (the gateways' and the router's rule), `WWW-Authenticate`
/// on 401. The gateways' documents and the router's merge both describe problems with it.
pub fn openapi_response(status: u16, description: &str) -> serde_json::Value {
    let mut headers = serde_json::json!({"x-request-id": {"$ref": "#/components/headers/x-request-id"}});
    if matches!(status, 429 | 502 | 503) {
        headers["Retry-After"] = serde_json::json!({"$ref": "#/components/headers/Retry-After"});
    }
    if status == 401 {
        headers["WWW-Authenticate"] = serde_json::json!({"$ref": "#/components/headers/WWW-Authenticate"});
    }
    serde_json::json!({
        "description": description,
        "headers": headers,
        "content": {CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}
