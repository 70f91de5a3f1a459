//! Identifiers and secrets.
//!
//! Ids are ULIDs: unique without coordination between replicas, and ordered by creation time,
//! which is what cursor pagination over a lexicographic index needs.

use rand::RngCore;

/// Ids of this process, strictly increasing even within one millisecond (ULID's monotonic
/// mode), so pages over a per-owner index list a burst of creations in creation order.
static GENERATOR: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());

/// A new time-ordered id, 26 characters of Crockford base32.
pub fn new_id() -> String {
    next_ulid().to_string()
}

/// [`new_id`] as its 26 ASCII bytes, for a caller that wants no `String` (a header value).
pub fn new_id_bytes() -> [u8; 26] {
    let mut text = [0u8; 26];
    next_ulid().array_to_str(&mut text);
    text
}

fn next_ulid() -> ulid::Ulid {
    let mut generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    // Overflow needs 2^80 ids in one millisecond; fall back to a random one rather than fail.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

/// `len` random bytes from the operating system's generator, hex encoded.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks that `value` of the request field `field` is an id made by [`new_id`], so nothing
/// else ever reaches a store key; the error names the field.
pub fn check(field: &str, value: &str) -> Result<(), crate::ServiceError> {
    if is_id(value) {
        Ok(())
    } else if value.is_empty() {
        Err(crate::ServiceError::invalid(format!("{field}: must not be empty")))
    } else {
        Err(crate::ServiceError::invalid(format!("{field}: not a valid id")))
    }
}

/// The id rule as a regular expression (for the OpenAPI contract): canonical ULID text,
/// upper-case Crockford base32, the first character at most `7` (a ULID is 128 bits).
pub const ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$";

/// Whether `s` is an id as [`new_id`] writes it ([`ID_PATTERN`]); rejects anything else before
/// it reaches a store key. Only the canonical spelling: the `ulid` parser also takes lower case
/// and first characters past `7` (dropping the overflow), so two spellings would name one id.
pub fn is_id(s: &str) -> bool {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bytes = s.as_bytes();
    bytes.len() == 26 && (b'0'..=b'7').contains(&bytes[0]) && bytes[1..].iter().all(|b| ALPHABET.contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ordered_and_recognised() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(a < b, "{a} < {b}");
        assert!(is_id(&a));
        assert!(!is_id("not-an-id"));
        assert!(!is_id("../../etc/passwd"));
        assert!(!is_id(&a.to_lowercase()), "one spelling per id");
        assert!(!is_id(&format!("8{}", &a[1..])), "past 128 bits");
        assert!(!is_id(&format!("{}I", &a[..25])), "not Crockford");
    }

    #[test]
    fn id_bytes_are_ids_too() {
        let a = new_id();
        let b = String::from_utf8(new_id_bytes().to_vec()).unwrap();
        assert!(is_id(&b) && a < b, "{a} < {b}");
    }

    #[test]
    fn ids_made_in_a_burst_are_strictly_increasing() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn checks_name_the_field() {
        assert!(check("order_id", &new_id()).is_ok());
        assert_eq!(check("order_id", "").unwrap_err().to_string(), "order_id: must not be empty");
        assert_eq!(check("order_id", "../x").unwrap_err().to_string(), "order_id: not a valid id");
    }

    #[test]
    fn random_hex_has_the_asked_length_and_differs() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16));
    }
}
