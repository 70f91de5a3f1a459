//! Checks on requests before anything is read or written. Each error names the field at fault,
//! so a client (or the gateway's problem+json) can point at it.

use mesh_core::ServiceError;
use mesh_proto::articles::{Actor, CreateArticleRequest, StockLine};

/// The role that may create articles.
pub(crate) const ADMIN_ROLE: &str = "admin";
pub(crate) const MAX_TITLE_CHARS: usize = 200;
pub(crate) const MAX_BODY_CHARS: usize = 10_000;
pub(crate) const MAX_PRICE_CENTS: i64 = 1_000_000_000;
pub(crate) const MAX_STOCK: i64 = 1_000_000;
#[cfg(test)]
use mesh_core::contracts::{MAX_ORDER_LINES as MAX_LINES, MAX_QUANTITY};

/// The fields of an article to create, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewArticle {
    pub(crate) title: String,
    pub(crate) body: String,
    pub(crate) price_cents: i64,
    pub(crate) stock: i64,
}

/// Only admins create articles. Checked before the fields, so a caller without the role learns
/// nothing about what a valid article looks like.
pub(crate) fn require_admin(actor: Option<&Actor>) -> Result<(), ServiceError> {
    if actor.is_some_and(|a| a.roles.iter().any(|r| r == ADMIN_ROLE)) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied("creating articles requires the admin role".into()))
    }
}

pub(crate) fn new_article(req: &CreateArticleRequest) -> Result<NewArticle, ServiceError> {
    let title_chars = req.title.chars().count();
    if req.title.trim().is_empty() {
        return Err(ServiceError::invalid("title: must not be empty"));
    }
    if title_chars > MAX_TITLE_CHARS {
        return Err(ServiceError::invalid(format!("title: at most {MAX_TITLE_CHARS} characters")));
    }
    if req.title.chars().any(char::is_control) {
        return Err(ServiceError::invalid("title: must not contain control characters"));
    }
    if req.body.chars().count() > MAX_BODY_CHARS {
        return Err(ServiceError::invalid(format!("body: at most {MAX_BODY_CHARS} characters")));
    }
    // Line breaks and tabs are text in a body; other control characters are not.
    if req.body.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(ServiceError::invalid(
            "body: must not contain control characters other than line breaks and tabs",
        ));
    }
    if !(0..=MAX_PRICE_CENTS).contains(&req.price_cents) {
        return Err(ServiceError::invalid(format!("price_cents: must be between 0 and {MAX_PRICE_CENTS}")));
    }
    if !(0..=MAX_STOCK).contains(&req.stock) {
        return Err(ServiceError::invalid(format!("stock: must be between 0 and {MAX_STOCK}")));
    }
    Ok(NewArticle {
        title: req.title.clone(),
        body: req.body.clone(),
        price_cents: req.price_cents,
        stock: req.stock,
    })
}

/// An id in `field`: the one check every service uses.
pub(crate) use mesh_core::ids::check as id;

/// Stock lines: the order-line rule ([`mesh_core::contracts::check_order_lines`]), shared with
/// the orders service and the gateway.
pub(crate) fn stock_lines(lines: &[StockLine]) -> Result<(), ServiceError> {
    let lines = lines.iter().map(|line| (line.article_id.as_str(), line.quantity));
    mesh_core::contracts::check_order_lines("lines", lines).map_err(ServiceError::invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::ids;

    fn article() -> CreateArticleRequest {
        CreateArticleRequest {
            actor: None,
            title: "Red widget".into(),
            body: "Line one\nline two\twith a tab".into(),
            price_cents: 1999,
            stock: 5,
        }
    }

    /// Makes one field of a valid request invalid.
    type Breaks = fn(&mut CreateArticleRequest);

    fn field_of(err: ServiceError) -> String {
        err.to_string().split(':').next().unwrap_or_default().to_owned()
    }

    #[test]
    fn only_an_actor_with_the_admin_role_may_create() {
        let admin = Actor { user_id: "u".into(), roles: vec!["user".into(), "admin".into()] };
        let user = Actor { user_id: "u".into(), roles: vec!["user".into()] };
        assert!(require_admin(Some(&admin)).is_ok());
        assert!(matches!(require_admin(Some(&user)), Err(ServiceError::PermissionDenied(_))));
        assert!(matches!(require_admin(None), Err(ServiceError::PermissionDenied(_))));
    }

    #[test]
    fn each_bad_field_is_named() {
        assert!(new_article(&article()).is_ok());
        let cases: [(&str, Breaks); 9] = [
            ("title", |r| r.title = String::new()),
            ("title", |r| r.title = "   ".into()),
            ("title", |r| r.title = "x".repeat(MAX_TITLE_CHARS + 1)),
            ("title", |r| r.title = "bell\u{7}".into()),
            ("body", |r| r.body = "x".repeat(MAX_BODY_CHARS + 1)),
            ("body", |r| r.body = "nul\0".into()),
            ("price_cents", |r| r.price_cents = -1),
            ("price_cents", |r| r.price_cents = MAX_PRICE_CENTS + 1),
            ("stock", |r| r.stock = MAX_STOCK + 1),
        ];
        for (field, break_it) in cases {
            let mut req = article();
            break_it(&mut req);
            assert_eq!(field_of(new_article(&req).unwrap_err()), field, "{req:?}");
        }
        let mut longest = article();
        longest.title = "é".repeat(MAX_TITLE_CHARS);
        assert!(new_article(&longest).is_ok(), "limits count characters, not bytes");
    }

    #[test]
    fn stock_lines_are_bounded() {
        let a = ids::new_id();
        let b = ids::new_id();
        let line = |id: &str, quantity| StockLine { article_id: id.into(), quantity };
        assert!(stock_lines(&[line(&a, 1), line(&b, MAX_QUANTITY)]).is_ok());
        assert_eq!(field_of(stock_lines(&[]).unwrap_err()), "lines");
        assert_eq!(field_of(stock_lines(&vec![line(&a, 1); MAX_LINES + 1]).unwrap_err()), "lines");
        assert_eq!(field_of(stock_lines(&[line(&a, 0)]).unwrap_err()), "lines[0].quantity");
        assert_eq!(field_of(stock_lines(&[line(&a, 1), line(&b, 1001)]).unwrap_err()), "lines[1].quantity");
        assert_eq!(field_of(stock_lines(&[line("nope", 1)]).unwrap_err()), "lines[0].article_id");
        assert!(stock_lines(&[line(&a, 1), line(&a, 2)]).is_ok(), "an article may be on two lines");
    }
}
