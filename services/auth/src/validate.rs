//! Input rules. Every request field passes through one of these before it reaches a hash, a
//! token or a store key; each error message starts with the field it is about.

use mesh_core::ServiceError;

/// RFC 5321 limits: a path of at most 256 octets minus the angle brackets, a local part of 64.
const MAX_EMAIL: usize = 254;
const MAX_LOCAL_PART: usize = 64;
pub(crate) const MIN_PASSWORD: usize = 10;
pub(crate) const MAX_PASSWORD: usize = 128;
const MAX_LABEL: usize = 64;

/// Checks an email as sent and returns it lower-cased. The shape is `local@domain`: no white
/// space or control characters anywhere (so none to trim: what is checked is what is kept), a
/// local part of 1 to 64 characters, a domain of non-empty dot-separated labels, 254 characters
/// in all. Lengths are in characters, as the OpenAPI contract states them
/// (services/gateway/src/openapi/contract.rs).
pub(crate) fn email(raw: &str) -> Result<String, ServiceError> {
    if raw.is_empty() {
        return Err(ServiceError::invalid("email: must not be empty"));
    }
    if raw.chars().count() > MAX_EMAIL {
        return Err(ServiceError::invalid(format!("email: at most {MAX_EMAIL} characters")));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServiceError::invalid("email: must not contain spaces or control characters"));
    }
    let Some((local, domain)) = raw.split_once('@') else {
        return Err(ServiceError::invalid("email: must contain an '@'"));
    };
    if domain.contains('@') {
        return Err(ServiceError::invalid("email: must contain exactly one '@'"));
    }
    if local.is_empty() || local.chars().count() > MAX_LOCAL_PART {
        return Err(ServiceError::invalid(format!(
            "email: the part before '@' must be 1..={MAX_LOCAL_PART} characters"
        )));
    }
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return Err(ServiceError::invalid("email: the domain after '@' is not a domain name"));
    }
    Ok(raw.to_lowercase())
}

/// The password policy for a new password. `email` is the normalised email of the account.
pub(crate) fn new_password(password: &str, email: &str) -> Result<(), ServiceError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD {
        return Err(ServiceError::invalid(format!("password: at least {MIN_PASSWORD} characters")));
    }
    if len > MAX_PASSWORD {
        return Err(ServiceError::invalid(format!("password: at most {MAX_PASSWORD} characters")));
    }
    let mut chars = password.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err(ServiceError::invalid("password: must not be one character repeated"));
    }
    if password.trim().to_lowercase() == email {
        return Err(ServiceError::invalid("password: must not be the email address"));
    }
    Ok(())
}

/// A password presented to log in: only its size is checked, the policy may have changed since.
pub(crate) fn presented_password(password: &str) -> Result<(), ServiceError> {
    if password.is_empty() {
        return Err(ServiceError::invalid("password: must not be empty"));
    }
    if password.chars().count() > MAX_PASSWORD {
        return Err(ServiceError::invalid(format!("password: at most {MAX_PASSWORD} characters")));
    }
    Ok(())
}

/// A label for people (display name, API key name): at most 64 characters as sent, not blank,
/// no control characters (they break logs and terminals); kept trimmed.
pub(crate) fn label(field: &str, raw: &str) -> Result<String, ServiceError> {
    if raw.chars().count() > MAX_LABEL {
        return Err(ServiceError::invalid(format!("{field}: at most {MAX_LABEL} characters")));
    }
    let value = raw.trim();
    if value.is_empty() {
        return Err(ServiceError::invalid(format!("{field}: must not be empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!("{field}: must not contain control characters")));
    }
    Ok(value.to_owned())
}

/// An id in `field`: the one check every service uses.
pub(crate) use mesh_core::ids::check as id;

/// A secret the client presents (refresh token, API key): present and of a plausible size. Its
/// content is checked by looking up its hash, so a wrong one is UNAUTHENTICATED, not invalid.
pub(crate) fn secret(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(ServiceError::invalid(format!("{field}: must not be empty")));
    }
    if value.chars().count() > 256 {
        return Err(ServiceError::invalid(format!("{field}: at most 256 characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(err: ServiceError) -> String {
        match err {
            ServiceError::InvalidArgument(m) => m,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn emails_are_lower_cased_and_kept_as_sent() {
        assert_eq!(email("Ada@Example.COM").unwrap(), "ada@example.com");
        assert_eq!(email("a@b").unwrap(), "a@b");
        // Nothing to trim: white space anywhere is refused, as the contract's pattern says.
        assert!(email("  ada@example.com").is_err());
        // Lengths are characters, not bytes.
        assert!(email(&format!("{}@example.com", "é".repeat(64))).is_ok());
    }

    #[test]
    fn malformed_emails_are_refused_naming_the_field() {
        let long = format!("{}@example.com", "a".repeat(250));
        let local = format!("{}@example.com", "a".repeat(65));
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "a@b@c",
            "@example.com",
            "ada@",
            "ada@.com",
            "ada@x..com",
            "a da@x.com",
            "ada@x.com\u{7}",
            long.as_str(),
            local.as_str(),
        ] {
            let msg = message(email(bad).unwrap_err());
            assert!(msg.starts_with("email:"), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn the_password_policy_names_each_rule() {
        new_password("correct horse", "ada@example.com").unwrap();
        let cases = [
            ("short", "at least"),
            (&"x".repeat(129) as &str, "at most"),
            ("aaaaaaaaaaaa", "repeated"),
            ("Ada@Example.com", "email"),
        ];
        for (password, rule) in cases {
            let msg = message(new_password(password, "ada@example.com").unwrap_err());
            assert!(msg.starts_with("password:") && msg.contains(rule), "{password:?}: {msg}");
        }
        // Length counts characters, not bytes.
        new_password("ééééééééé1", "ada@example.com").unwrap();
    }

    #[test]
    fn labels_are_trimmed_bounded_and_printable() {
        assert_eq!(label("display_name", "  Ada  ").unwrap(), "Ada");
        assert_eq!(label("display_name", &"é".repeat(64)).unwrap().chars().count(), 64);
        for bad in ["", "  ", "a\u{0}b", "tab\there", &"x".repeat(65), &format!(" {} ", "x".repeat(63))] {
            let msg = message(label("display_name", bad).unwrap_err());
            assert!(msg.starts_with("display_name:"), "{bad:?}: {msg}");
        }
    }

    #[test]
    fn only_real_ids_pass() {
        id("user_id", &mesh_core::ids::new_id()).unwrap();
        for bad in ["", "1", "../../x", "auth:user:*"] {
            assert!(message(id("user_id", bad).unwrap_err()).starts_with("user_id:"));
        }
    }
}
