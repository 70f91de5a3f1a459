//! articles
