//! The mesh's header names, declared once for router, gateways and services.

/// The request id: kept end to end when the client sent a sane one, else generated.
pub const REQUEST_ID: &str = "x-request-id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Makes a POST safe to retry and to queue (`POST /v1/orders`).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The gateway instance that served the request.
pub const MESH_GATEWAY: &str = "x-mesh-gateway";
/// `cache | degraded | queued`: the answer did not come from the live service.
pub const MESH_FALLBACK: &str = "x-mesh-fallback";
/// `service`: a 5xx a service behind the gateway caused, not the gateway itself (see
/// [`crate::fault`]); the router neither counts it against the gateway nor retries it elsewhere.
pub const MESH_FAULT: &str = "x-mesh-fault";
/// An API key credential.
pub const API_KEY: &str = "x-api-key";
