//! Page size and cursor of list calls, the same for every service that lists.
//!
//! A cursor is the id of the last item a call examined. Clients treat it as opaque; it is checked
//! like any id before it reaches a store key, so a forged one is refused, not looked up.

use crate::{ServiceError, ids};

/// Page size when the caller asks for 0 (proto3's "not set").
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page. A larger ask is refused rather than clamped, so a caller who asked for 500 learns
/// at once that it will not get them instead of silently paging through fewer.
pub const MAX_LIMIT: usize = 100;

/// A checked page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Start strictly after this id; `None` starts at the beginning.
    pub after: Option<String>,
}

// === impl PageRequest ===

impl PageRequest {
    /// Checks a request's `limit` (0: [`DEFAULT_LIMIT`]) and `cursor` (empty: from the start).
    pub fn parse(limit: u32, cursor: &str) -> Result<Self, ServiceError> {
        let limit = match limit as usize {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(ServiceError::invalid(format!("limit: at most {MAX_LIMIT}")));
            }
            n => n,
        };
        let after = match cursor {
            "" => None,
            c if ids::is_id(c) => Some(c.to_owned()),
            _ => return Err(ServiceError::invalid("cursor: malformed; pass back a next_cursor unchanged")),
        };
        Ok(Self { limit, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_the_default_and_over_the_maximum_is_refused() {
        assert_eq!(PageRequest::parse(0, "").unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(PageRequest::parse(100, "").unwrap().limit, 100);
        let err = PageRequest::parse(101, "").unwrap_err();
        assert!(err.to_string().starts_with("limit:"), "{err}");
    }

    #[test]
    fn a_cursor_must_be_an_id() {
        let id = ids::new_id();
        assert_eq!(PageRequest::parse(5, &id).unwrap().after, Some(id));
        for bad in ["x", "articles:index", "../../", &"U".repeat(26)] {
            let err = PageRequest::parse(5, bad).unwrap_err();
            assert!(err.to_string().starts_with("cursor:"), "{bad}: {err}");
        }
    }
}
