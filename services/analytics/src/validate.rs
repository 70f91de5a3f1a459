//! The rules for an event. Each failure is `InvalidArgument` with a message that starts with the
//! field's name, except properties too large as a whole ([`TooLarge`], `OutOfRange`).

use std::collections::HashMap;
use std::fmt;

use mesh_core::ServiceError;
use tonic::Status;

/// Longest event type, in characters.
pub const TYPE_MAX: usize = 64;
/// Most properties one event may carry.
pub const PROPERTIES_MAX: usize = 32;
/// Longest property key, in characters.
pub const KEY_MAX: usize = 64;
/// Longest property value, in characters.
pub const VALUE_MAX: usize = 512;

/// An owner id that passed [`mesh_core::ids::is_id`]. Store keys are built from this type only,
/// so nothing a caller sent reaches a key unchecked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerId(String);

/// Checks an owner id.
pub fn owner_id(raw: &str) -> Result<OwnerId, ServiceError> {
    mesh_core::ids::check("owner_id", raw)?;
    Ok(OwnerId(raw.to_owned()))
}

/// Checks an event type: 1 to 64 of `[a-z0-9_.-]`. The type is a hash field and a label in every
/// summary, so its alphabet is kept small and unambiguous (no case or Unicode variants of one name).
pub fn event_type(raw: &str) -> Result<&str, ServiceError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-');
    if raw.is_empty() || raw.len() > TYPE_MAX || !raw.chars().all(allowed) {
        return Err(ServiceError::invalid(format!(
            "type: must be 1 to {TYPE_MAX} characters of a-z, 0-9, '_', '.', '-'"
        )));
    }
    Ok(raw)
}

/// Checks the properties: at most 32, keys 1 to 64 characters without control characters, values
/// at most 512 characters. Messages quote the key only once it is known to be short and printable.
pub fn properties(properties: &HashMap<String, String>) -> Result<(), ServiceError> {
    if properties.len() > PROPERTIES_MAX {
        return Err(ServiceError::invalid(format!("properties: at most {PROPERTIES_MAX} entries")));
    }
    for (key, value) in properties {
        let length = key.chars().count();
        if length == 0 || length > KEY_MAX || key.chars().any(char::is_control) {
            return Err(ServiceError::invalid(format!(
                "properties: keys must be 1 to {KEY_MAX} characters without control characters"
            )));
        }
        if value.chars().count() > VALUE_MAX {
            return Err(ServiceError::invalid(format!("properties.{key}: at most {VALUE_MAX} characters")));
        }
    }
    Ok(())
}

/// Properties whose JSON is longer than the configured bound.
///
/// `OUT_OF_RANGE`, not `INVALID_ARGUMENT`: each property may be fine, the event is only too large
/// to keep, and the gateway answers this code 413 (not 400), naming the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: usize,
    pub size: usize,
}

/// The properties as they are stored (JSON), if that is at most `max_bytes` long. Checked on
/// the encoding itself, so escapes and multi-byte characters count as what they cost in the
/// store. Call after [`properties`].
pub fn encoded_properties(
    properties: &HashMap<String, String>,
    max_bytes: usize,
) -> Result<String, TooLarge> {
    // A map of strings always encodes.
    let json = serde_json::to_string(properties).unwrap_or_else(|_| "{}".into());
    if json.len() > max_bytes {
        return Err(TooLarge { limit: max_bytes, size: json.len() });
    }
    Ok(json)
}

// === impl TooLarge ===

impl From<TooLarge> for Status {
    fn from(e: TooLarge) -> Self {
        Status::out_of_range(format!(
            "properties: at most {} bytes as JSON (max_properties_bytes), this event has {}",
            e.limit, e.size
        ))
    }
}

// === impl OwnerId ===

impl OwnerId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal<T: fmt::Debug>(result: Result<T, ServiceError>) -> String {
        match result {
            Err(ServiceError::InvalidArgument(message)) => message,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    fn props<const N: usize>(entries: [(&str, &str); N]) -> HashMap<String, String> {
        entries.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
    }

    #[test]
    fn owner_ids_must_be_ids() {
        let id = mesh_core::ids::new_id();
        assert_eq!(owner_id(&id).unwrap().as_str(), id);
        for bad in ["", "owner", "a:b", "../x"] {
            assert!(refusal(owner_id(bad)).starts_with("owner_id:"), "{bad:?}");
        }
    }

    #[test]
    fn types_are_short_lowercase_names() {
        for good in ["page.view", "signup", "a", "x-1_2.3", &"a".repeat(64)] {
            assert_eq!(event_type(good).unwrap(), good);
        }
        for bad in ["", "Page.view", "page view", "päge", "a:b", "a\nb", &"a".repeat(65)] {
            assert!(refusal(event_type(bad)).starts_with("type:"), "{bad:?}");
        }
    }

    #[test]
    fn properties_are_bounded_in_number_and_size() {
        assert!(properties(&HashMap::new()).is_ok());
        assert!(properties(&props([("path", "/"), ("k", &"v".repeat(512))])).is_ok());
        let full: HashMap<String, String> = (0..32).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(properties(&full).is_ok());

        let too_many: HashMap<String, String> = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(refusal(properties(&too_many)).starts_with("properties:"));
        assert!(refusal(properties(&props([("", "v")]))).starts_with("properties:"));
        assert!(refusal(properties(&props([(&"k".repeat(65), "v")]))).starts_with("properties:"));
        assert!(refusal(properties(&props([("a\u{0}", "v")]))).starts_with("properties:"));
        let long_value = "v".repeat(513);
        assert_eq!(
            refusal(properties(&props([("path", long_value.as_str())]))),
            "properties.path: at most 512 characters"
        );
    }

    #[test]
    fn properties_are_bounded_as_a_whole_by_their_json() {
        let small = props([("path", "/")]);
        assert_eq!(encoded_properties(&small, 4096).unwrap(), r#"{"path":"/"}"#);
        // 32 properties of 512 characters pass every per-property rule, and are 16 KiB.
        let big: HashMap<String, String> = (0..32).map(|i| (format!("k{i}"), "v".repeat(512))).collect();
        assert!(properties(&big).is_ok());
        let refused = encoded_properties(&big, 4096).unwrap_err();
        assert_eq!(refused.limit, 4096);
        assert!(refused.size > 16 * 1024, "{refused:?}");
        let status = Status::from(refused);
        assert_eq!(status.code(), tonic::Code::OutOfRange);
        assert!(status.message().contains("4096"), "names the limit: {}", status.message());
        // Escapes count as what they cost: 100 quotes are 200 bytes of JSON.
        let quotes = props([("q", &"\"".repeat(100))]);
        assert!(encoded_properties(&quotes, 150).is_err());
    }
}
