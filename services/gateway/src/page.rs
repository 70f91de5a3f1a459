//! Cursor pagination parameters shared by every list.

use serde::Deserialize;
use utoipa::IntoParams;

/// `?limit=&cursor=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 100; 0 or absent: 20.
    #[serde(default, deserialize_with = "crate::json::optional_integer")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// An empty cursor from a service means "no more pages".
pub fn next_cursor(cursor: String) -> Option<String> {
    (!cursor.is_empty()).then_some(cursor)
}
