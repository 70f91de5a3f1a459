//! The OpenAPI 3.1 document of each gateway: generated from the real handler types (utoipa),
//! then made a contract by [`contract`]: the rules the handlers and services enforce, every
//! status each route can answer, the headers, the security schemes and the links.

mod contract;

use serde_json::Value;
use utoipa::OpenApi;

use crate::config::Domain;
use crate::{business, identity};

pub use contract::PUBLIC_OPERATIONS;

#[derive(OpenApi)]
#[openapi(
    info(title = "mesh identity API", description = "Accounts, sessions, API keys, profiles and quota."),
    paths(
        identity::auth::register,
        identity::auth::login,
        identity::auth::refresh,
        identity::auth::logout,
        identity::auth::create_api_key,
        identity::auth::list_api_keys,
        identity::auth::delete_api_key,
        identity::auth::jwks,
        identity::users::get_me,
        identity::users::update_me,
        identity::quota::get_quota,
    )
)]
struct IdentityApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mesh business API",
        description = "Orders, the article catalogue, analytics and the dashboard."
    ),
    paths(
        business::orders::create_order,
        business::orders::list_orders,
        business::orders::get_order,
        business::order_events::order_events,
        business::articles::list_articles,
        business::articles::get_article,
        business::articles::create_article,
        business::analytics::record_event,
        business::analytics::summary,
        business::live::live,
        business::dashboard::dashboard,
    )
)]
struct BusinessApi;

/// The document of one domain's gateway.
pub fn document(domain: Domain) -> Value {
    let generated = match domain {
        Domain::Identity => IdentityApi::openapi(),
        Domain::Business => BusinessApi::openapi(),
    };
    let mut document = serde_json::to_value(generated).unwrap_or_default();
    contract::apply(&mut document);
    document
}
