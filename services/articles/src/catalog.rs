//! The catalogue: creating, reading and listing (searching) articles.

use mesh_core::page::PageRequest;
use mesh_core::store::decode;
use mesh_core::{ServiceError, ids};
use mesh_proto::articles::{Article, CreateArticleRequest, ListArticlesRequest, ListArticlesResponse};

use crate::model::{self, StoredArticle};
use crate::search::Query;
use crate::service::ArticlesApi;
use crate::validate;

/// Articles read per store round trip while filtering by a query. Bigger batches mean fewer
/// round trips on sparse queries; each article may be ~10 KB, so this also bounds one reply.
const SCAN_BATCH: usize = 100;

/// One article id from the index, with the article and its stock when they exist.
type Loaded = (String, Option<(StoredArticle, i64)>);

// === impl ArticlesApi ===

impl ArticlesApi {
    pub(crate) async fn create(&self, req: CreateArticleRequest) -> Result<Article, ServiceError> {
        validate::require_admin(req.actor.as_ref())?;
        let new = validate::new_article(&req)?;
        let id = ids::new_id();
        let article = StoredArticle {
            created_at: model::created_at(&id),
            id,
            title: new.title,
            body: new.body,
            price_cents: new.price_cents,
        };
        // Stock first, the record next, the index last: whatever a crash leaves behind is never
        // an indexed article without its stock.
        self.store.set(&model::stock_key(&article.id), &new.stock.to_string(), None).await?;
        self.store.set_json(&model::article_key(&article.id), &article, None).await?;
        self.store.index_add(model::INDEX, &article.id).await?;
        tracing::info!(article = %article.id, stock = new.stock, "article created");
        Ok(article.to_proto(new.stock))
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Article, ServiceError> {
        validate::id("id", id)?;
        match self.load(&[id.to_owned()]).await?.pop() {
            Some((_, Some((article, stock)))) => Ok(article.to_proto(stock)),
            _ => Err(ServiceError::not_found(format!("article {id} not found"))),
        }
    }

    /// Oldest first from the cursor, keeping the articles that match the query. Examines at most
    /// `max_scan` articles; a page cut short by that bound still carries a cursor to go on from.
    pub(crate) async fn list(&self, req: ListArticlesRequest) -> Result<ListArticlesResponse, ServiceError> {
        let query = Query::parse(&req.query)?;
        let page = PageRequest::parse(req.limit, &req.cursor)?;
        // Without a query every article matches, so one more than the page tells whether there
        // is a next page without reading further.
        let batch = if query.is_empty() { page.limit + 1 } else { SCAN_BATCH };
        let mut found: Vec<Article> = Vec::with_capacity(page.limit);
        let mut cursor = page.after;
        let mut examined = 0;
        while examined < self.cfg.max_scan {
            let want = batch.min(self.cfg.max_scan - examined);
            let ids = self.store.index_page(model::INDEX, cursor.as_deref(), want, false).await?;
            let at_end = ids.len() < want;
            let mut loaded = self.load(&ids).await?.into_iter();
            while found.len() < page.limit {
                let Some((id, entry)) = loaded.next() else { break };
                examined += 1;
                cursor = Some(id);
                if let Some((article, stock)) = entry
                    && query.matches(&article.title, &article.body)
                {
                    found.push(article.to_proto(stock));
                }
            }
            if found.len() == page.limit {
                // The page is full. What is left of this batch is already read, so it says for
                // free whether another match follows; past the batch there may be more.
                let more_here = loaded.any(|(_, e)| e.is_some_and(|(a, _)| query.matches(&a.title, &a.body)));
                let more = more_here || !at_end;
                return Ok(response(found, cursor.filter(|_| more)));
            }
            if at_end {
                return Ok(response(found, None));
            }
        }
        // The scan bound was reached before the page filled: hand back where the scan stopped.
        Ok(response(found, cursor))
    }

    /// The articles `ids` and their stock, in order, in one round trip. An id whose record is
    /// missing (the index is written last, so only a foreign writer leaves one) loads as `None`.
    pub(crate) async fn load(&self, ids: &[String]) -> Result<Vec<Loaded>, ServiceError> {
        let keys: Vec<String> =
            ids.iter().flat_map(|id| [model::article_key(id), model::stock_key(id)]).collect();
        let values = self.store.get_many(&keys).await?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, pair) in ids.iter().zip(values.chunks(2)) {
            let entry = match pair {
                [Some(raw), stock] => {
                    let article: StoredArticle = decode(&model::article_key(id), raw)?;
                    let stock = match stock {
                        Some(s) => s
                            .parse::<i64>()
                            .map_err(|e| ServiceError::internal(format!("stock of {id}: {e}")))?,
                        None => 0,
                    };
                    Some((article, stock))
                }
                _ => None,
            };
            out.push((id.clone(), entry));
        }
        Ok(out)
    }
}

fn response(articles: Vec<Article>, next: Option<String>) -> ListArticlesResponse {
    ListArticlesResponse { articles, next_cursor: next.unwrap_or_default() }
}
