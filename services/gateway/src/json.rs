//! Extractors that turn malformed input into problem+json naming what is wrong.
//!
//! Request types use `#[serde(deny_unknown_fields)]`; axum's JSON rejection carries serde's
//! message with the path of the offending field (`items[0].quantity: invalid type …`).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body, or a 400/413/415/422 problem.
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

fn json_problem(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    // axum prefixes serde's message with a sentence of its own; keep serde's part.
    let detail = text.split_once(": ").map(|(_, rest)| rest.to_owned()).unwrap_or(text);
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::unprocessable(detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(format!("malformed JSON: {detail}")),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as `Content-Type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            "the request body exceeds the size limit",
        ),
        _ => ApiError::bad_request(detail),
    }
}

/// Query parameters, or a 400 problem naming the bad parameter.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_problem(rejection)),
        }
    }
}

fn query_problem(rejection: QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text.split_once(": ").map(|(_, rest)| rest.to_owned()).unwrap_or(text);
    ApiError::bad_request(format!("query: {detail}"))
}

/// `#[serde(deserialize_with = "crate::json::integer")]`: an integer field that takes what
/// JSON Schema calls an integer, a number without a fraction, so `29.0` as well as `29` (serde
/// alone refuses `29.0` for an integer type, and a client generated from the contract may send
/// it), and in a query string its text. Anything with a fraction, or out of the type's range,
/// is refused naming the field.
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    let value = deserializer.deserialize_any(IntegerVisitor)?;
    T::try_from(value).map_err(|_| serde::de::Error::custom(format!("{value} is out of range")))
}

/// [`integer`] for an optional field (`Option<T>`, absent or `null` is `None`).
pub fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    #[derive(serde::Deserialize)]
    struct Wrapped<T: TryFrom<i128>>(#[serde(deserialize_with = "integer")] T);
    let wrapped: Option<Wrapped<T>> = serde::Deserialize::deserialize(deserializer)?;
    Ok(wrapped.map(|Wrapped(value)| value))
}

struct IntegerVisitor;

impl serde::de::Visitor<'_> for IntegerVisitor {
    type Value = i128;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(v.into())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i128, E> {
        // Past 2^63 an f64 is no longer exact, and every field here is far below it.
        if v.fract() == 0.0 && v.abs() < 9.2e18 {
            Ok(v as i128)
        } else {
            Err(E::custom(format!("invalid type: {v} is not an integer")))
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<i128, E> {
        match (v.parse::<i128>(), v.parse::<f64>()) {
            (Ok(n), _) => Ok(n),
            (_, Ok(f)) if f.is_finite() => self.visit_f64(f),
            _ => Err(E::custom(format!("invalid type: {v:?} is not an integer"))),
        }
    }
}
