//! What a stream holds, the same for both backends.

/// One entry of a stream: its id (`<unix ms>-<sequence>`, increasing in append order) and its
/// field/value pairs in the order they were appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub fields: Vec<(String, String)>,
}

// === impl StreamEntry ===

impl StreamEntry {
    /// The value of the first field called `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(f, _)| f == name).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_name() {
        let entry = StreamEntry { id: "1-0".into(), fields: vec![("a".into(), "1".into())] };
        assert_eq!(entry.field("a"), Some("1"));
        assert_eq!(entry.field("b"), None);
    }
}
