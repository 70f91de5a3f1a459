//! The rules for every input of the user service. Each failure is `InvalidArgument` with a
//! message that starts with the field's name, so a caller (and the gateway's problem+json) can
//! point at what to fix.

use std::fmt;

use mesh_core::ServiceError;

/// Longest email accepted: the limit of a forward path in SMTP (RFC 5321 §4.5.3.1.3).
pub const EMAIL_MAX: usize = 254;
/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest bio, in characters.
pub const BIO_MAX: usize = 500;

/// A user id that passed [`mesh_core::ids::is_id`]. Store keys are built from this type only, so
/// nothing a caller sent reaches a key unchecked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserId(String);

/// Checks a user id.
pub fn user_id(raw: &str) -> Result<UserId, ServiceError> {
    mesh_core::ids::check("user_id", raw)?;
    Ok(UserId(raw.to_owned()))
}

/// Checks an email and returns it as stored: trimmed and lowercased, so one address has one
/// spelling whichever way a client typed it.
pub fn email(raw: &str) -> Result<String, ServiceError> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(ServiceError::invalid("email: must not be empty"));
    }
    if email.len() > EMAIL_MAX {
        return Err(ServiceError::invalid(format!("email: at most {EMAIL_MAX} characters")));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServiceError::invalid("email: must not contain spaces or control characters"));
    }
    if !email.contains('@') {
        return Err(ServiceError::invalid("email: must contain '@'"));
    }
    Ok(email)
}

/// Checks a display name and returns it trimmed: at most 64 characters as sent, not blank, no
/// control characters.
pub fn display_name(raw: &str) -> Result<String, ServiceError> {
    // Counted as sent, like auth's labels and the OpenAPI contract: a name is never refused
    // for length by one and taken by the other.
    if raw.chars().count() > DISPLAY_NAME_MAX {
        return Err(ServiceError::invalid(format!("display_name: at most {DISPLAY_NAME_MAX} characters")));
    }
    let name = raw.trim();
    if name.is_empty() {
        return Err(ServiceError::invalid("display_name: must not be empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid("display_name: must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Checks a bio: at most 500 characters, no control characters but newlines (a bio may have
/// paragraphs). Empty is allowed and clears it. Kept as sent: its whitespace may be layout.
pub fn bio(raw: &str) -> Result<String, ServiceError> {
    if raw.chars().count() > BIO_MAX {
        return Err(ServiceError::invalid(format!("bio: at most {BIO_MAX} characters")));
    }
    if raw.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ServiceError::invalid("bio: must not contain control characters other than newline"));
    }
    Ok(raw.to_owned())
}

// === impl UserId ===

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of an `InvalidArgument`, or a panic naming what came back instead.
    fn refusal<T: fmt::Debug>(result: Result<T, ServiceError>) -> String {
        match result {
            Err(ServiceError::InvalidArgument(message)) => message,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn user_ids_must_be_ids() {
        let id = mesh_core::ids::new_id();
        assert_eq!(user_id(&id).unwrap().as_str(), id);
        for bad in ["", "user-1", "../../etc/passwd", &format!("{id}x"), &id[1..]] {
            assert!(refusal(user_id(bad)).starts_with("user_id:"), "{bad:?}");
        }
    }

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(email("  Ada@Example.ORG \n").unwrap(), "ada@example.org");
        let long = format!("{}@x.io", "a".repeat(EMAIL_MAX));
        for bad in ["", "   ", "no-at-sign", "a b@c.d", "a\u{7}@c.d", long.as_str()] {
            assert!(refusal(email(bad)).starts_with("email:"), "{bad:?}");
        }
        let longest = format!("{}@x.io", "a".repeat(EMAIL_MAX - 5));
        assert_eq!(email(&longest).unwrap().len(), EMAIL_MAX);
    }

    #[test]
    fn display_names_are_one_to_sixty_four_characters_without_controls() {
        assert_eq!(display_name("  Ada  ").unwrap(), "Ada");
        assert!(display_name(&"é".repeat(64)).is_ok(), "characters are counted, not bytes");
        for bad in [String::new(), " \t ".into(), "x".repeat(65), "a\u{0}b".into(), "a\nb".into()] {
            assert!(refusal(display_name(&bad)).starts_with("display_name:"), "{bad:?}");
        }
    }

    #[test]
    fn bios_allow_newlines_and_empty_but_not_other_controls_or_length() {
        assert_eq!(bio("").unwrap(), "");
        assert_eq!(bio(" line one\nline two ").unwrap(), " line one\nline two ");
        assert!(bio(&"ß".repeat(500)).is_ok());
        for bad in ["x".repeat(501), "a\rb".into(), "a\tb".into(), "\u{1b}[31m".into()] {
            assert!(refusal(bio(&bad)).starts_with("bio:"), "{bad:?}");
        }
    }
}
