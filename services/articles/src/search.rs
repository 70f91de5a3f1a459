//! The word query of `ListArticles`: an article matches when its title or body contains every
//! whitespace-separated word of the query, ignoring case. Words match anywhere inside the text
//! (`widget` matches "Widgets"), which is what people typing into a search box expect.

use mesh_core::ServiceError;

/// Longest query accepted, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 200;

/// A parsed query: its words, lower-cased once here instead of once per article examined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    words: Vec<String>,
}

// === impl Query ===

impl Query {
    pub(crate) fn parse(raw: &str) -> Result<Self, ServiceError> {
        if raw.chars().count() > MAX_QUERY_CHARS {
            return Err(ServiceError::invalid(format!("query: at most {MAX_QUERY_CHARS} characters")));
        }
        let mut words: Vec<String> = raw.split_whitespace().map(str::to_lowercase).collect();
        // Repeating a word changes nothing; checking it once is enough.
        words.sort_unstable();
        words.dedup();
        Ok(Self { words })
    }

    /// An empty query matches everything.
    pub(crate) fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub(crate) fn matches(&self, title: &str, body: &str) -> bool {
        if self.words.is_empty() {
            return true;
        }
        let title = title.to_lowercase();
        let body = body.to_lowercase();
        self.words.iter().all(|w| title.contains(w.as_str()) || body.contains(w.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(raw).unwrap()
    }

    #[test]
    fn every_word_must_appear_in_title_or_body_ignoring_case() {
        let (title, body) = ("Red Widget", "A sturdy thing for the GARDEN");
        assert!(q("").matches(title, body));
        assert!(q("   ").is_empty());
        assert!(q("red").matches(title, body));
        assert!(q("WIDGET red").matches(title, body));
        assert!(q("widget garden").matches(title, body), "words may come from title and body");
        assert!(q("  red\twidget\n").matches(title, body));
        assert!(!q("red blue").matches(title, body), "every word is required");
        assert!(!q("gadget").matches(title, body));
        assert!(q("GARD").matches(title, body), "words match inside longer words");
    }

    #[test]
    fn non_ascii_text_folds_case_too() {
        assert!(q("ÉTÉ").matches("Robe d'été", ""));
        assert!(q("straße").matches("", "STRASSE oder Straße"));
    }

    #[test]
    fn a_word_cannot_span_title_and_body() {
        assert!(!q("redwidget").matches("red", "widget"));
    }

    #[test]
    fn overlong_queries_are_refused() {
        assert!(Query::parse(&"a".repeat(MAX_QUERY_CHARS)).is_ok());
        let err = Query::parse(&"a".repeat(MAX_QUERY_CHARS + 1)).unwrap_err();
        assert!(err.to_string().starts_with("query:"), "{err}");
    }
}
