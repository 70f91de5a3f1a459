//! Rules more than one component checks, written once so they cannot drift apart: the gateway
//! must refuse what the orders service would refuse (an order queued while orders is down is
//! created later, and a refusal then can no longer reach its client), and orders must refuse
//! what articles would.

/// Longest request id or Idempotency-Key.
pub const MAX_TOKEN_LEN: usize = 128;
/// Lines of one order (or one stock reservation).
pub const MAX_ORDER_LINES: usize = 50;
/// Units of one article in one line.
pub const MAX_QUANTITY: u32 = 1000;

/// A request id or an `Idempotency-Key`: 1 to 128 printable ASCII characters, no spaces: safe in
/// logs, headers and store keys.
pub fn is_token(value: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The `Idempotency-Key` rule, with a message for a client that broke it.
pub fn check_idempotency_key(field: &str, key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!("{field}: required"));
    }
    if !is_token(key) {
        return Err(format!("{field}: 1 to {MAX_TOKEN_LEN} printable ASCII characters without spaces"));
    }
    Ok(())
}

/// Order lines as `(article id, quantity)`, the field naming them (`items`, `lines`): 1 to 50
/// lines of 1 to 1000 units, each a valid article id. An article may appear on more than one
/// line: each line takes its own stock (articles takes every line or none), and the lines
/// answered back mirror the lines asked for one to one. (It was refused once; the OpenAPI
/// contract cannot state "unique by article", so a schema-valid order was refused.) The
/// message names the bad field (`items[2].quantity: …`).
pub fn check_order_lines<'a>(
    field: &str,
    lines: impl ExactSizeIterator<Item = (&'a str, u32)>,
) -> Result<(), String> {
    if lines.len() == 0 || lines.len() > MAX_ORDER_LINES {
        return Err(format!("{field}: between 1 and {MAX_ORDER_LINES} {field}"));
    }
    for (i, (article_id, quantity)) in lines.enumerate() {
        if let Err(e) = crate::ids::check(&format!("{field}[{i}].article_id"), article_id) {
            return Err(e.to_string());
        }
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(format!("{field}[{i}].quantity: must be between 1 and {MAX_QUANTITY}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_short_printable_and_without_spaces() {
        assert!(is_token("order-1") && is_token(&"k".repeat(128)));
        for bad in ["", "a b", "tab\t", "clé", &"k".repeat(129)] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert_eq!(check_idempotency_key("idempotency_key", "").unwrap_err(), "idempotency_key: required");
        assert!(check_idempotency_key("Idempotency-Key", "a b").unwrap_err().starts_with("Idempotency-Key:"));
    }

    #[test]
    fn order_lines_name_the_bad_field() {
        let (a, b) = (crate::ids::new_id(), crate::ids::new_id());
        let check = |lines: &[(&str, u32)]| check_order_lines("items", lines.iter().copied());
        assert!(check(&[(&a, 1), (&b, MAX_QUANTITY)]).is_ok());
        let field = |lines: &[(&str, u32)]| check(lines).unwrap_err().split(':').next().unwrap().to_owned();
        assert_eq!(field(&[]), "items");
        assert_eq!(field(&[(&a, 0)]), "items[0].quantity");
        assert_eq!(field(&[(&a, MAX_QUANTITY + 1)]), "items[0].quantity");
        assert_eq!(field(&[(&a, 1), ("nope", 1)]), "items[1].article_id");
        assert!(check(&[(&a, 1), (&a, 2)]).is_ok(), "an article may be on two lines");
        let many: Vec<(&str, u32)> = (0..=MAX_ORDER_LINES).map(|_| (a.as_str(), 1)).collect();
        assert_eq!(field(&many), "items");
    }
}
