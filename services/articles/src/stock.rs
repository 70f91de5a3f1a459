//! Reserving and releasing stock.
//!
//! A reservation takes stock for every line or for none, and is idempotent by its id:
//! 1. claim the id with `set_nx` as `pending`, marked with this call's own attempt id (the claim
//!    expires after `reservation_timeout`, so a replica dying here does not block the id forever);
//! 2. take each line's stock with one atomic `add_bounded(-q, 0, MAX)`: it never goes below zero,
//!    whatever other replicas do at the same time;
//! 3. if a line is short, give back what the earlier lines took, drop the claim if it is still
//!    this call's own (`delete_if_eq`), and refuse;
//! 4. else flip the claim to `reserved` with the lines and their prices, kept for
//!    `reservation_ttl` (7d by default, far past any repeat).
//!
//! A repeat with the same id finds the claim: `reserved` answers the stored lines again (nothing
//! is taken twice), `pending` means another call is at step 2 and answers ABORTED (retry soon).
//!
//! Where the store fails in the middle we cannot know whether a write landed; every such path
//! errs towards stock that is lost (under-sold, visible in logs) and never towards stock that is
//! handed out twice.

use std::time::Instant;

use mesh_core::ServiceError;
use mesh_core::store::{Bounded, decode};
use mesh_proto::articles::{ReserveStockRequest, ReserveStockResponse};

use crate::model::{self, Line, Reservation, ReservationState};
use crate::service::ArticlesApi;
use crate::validate;

// === impl ArticlesApi ===

impl ArticlesApi {
    pub(crate) async fn reserve(
        &self,
        req: ReserveStockRequest,
    ) -> Result<ReserveStockResponse, ServiceError> {
        validate::id("reservation_id", &req.reservation_id)?;
        validate::stock_lines(&req.lines)?;
        let id = req.reservation_id;
        let key = model::reservation_key(&id);

        // Prices and existence first: it only reads, so a missing article needs no undoing.
        let article_ids: Vec<String> = req.lines.iter().map(|l| l.article_id.clone()).collect();
        let mut lines = Vec::with_capacity(req.lines.len());
        for (line, (article_id, entry)) in req.lines.iter().zip(self.load(&article_ids).await?) {
            let Some((article, _)) = entry else {
                return Err(ServiceError::not_found(format!("article {article_id} not found")));
            };
            lines.push(Line { article_id, quantity: line.quantity, unit_price_cents: article.price_cents });
        }

        let pending = Reservation::pending(lines);
        let claim = pending.encode()?;
        if !self.store.set_nx(&key, &claim, Some(self.cfg.reservation_timeout)).await? {
            return self.repeated(&id).await;
        }
        // Give up well before the claim expires, so no second call can claim the same id while
        // this one still takes stock.
        let deadline = Instant::now() + self.cfg.reservation_timeout / 2;
        if let Err(e) = self.take(&id, &pending.lines, deadline).await {
            // This reservation holds nothing now; free the id so the caller may try it again.
            // Only our own claim: if ours expired while the store stalled, another call may have
            // claimed the id and be taking stock under it. Deleting its claim would let a third
            // call claim the id too, and both would keep the stock they took.
            if let Err(cause) = self.store.delete_if_eq(&key, &claim).await {
                tracing::warn!(reservation = %id, %cause, "could not drop a failed reservation's claim");
            }
            return Err(e);
        }

        let reserved = Reservation::new(ReservationState::Reserved, pending.lines);
        match self.store.replace(&key, &reserved.encode()?, Some(self.cfg.reservation_ttl)).await? {
            Some(_) => {
                tracing::info!(reservation = %id, lines = reserved.lines.len(), "stock reserved");
                Ok(response(id, &reserved))
            }
            None => {
                // The claim expired under us (the store stalled past the deadline check). The id
                // is free for anyone, so this call must not keep the stock.
                self.give_back(&id, &reserved.lines).await;
                Err(ServiceError::Unavailable("reservation took too long, try again".into()))
            }
        }
    }

    /// Gives a reservation's stock back, once: the state flips `reserved → released` with one
    /// atomic swap, and only the caller that saw `reserved` come out of it returns the stock.
    pub(crate) async fn release(&self, id: &str) -> Result<bool, ServiceError> {
        validate::id("reservation_id", id)?;
        let key = model::reservation_key(id);
        let Some(current) = self.store.get_json::<Reservation>(&key).await? else {
            return Ok(false);
        };
        if current.state != ReservationState::Reserved {
            return Ok(false);
        }
        let released = Reservation::new(ReservationState::Released, current.lines);
        let Some(previous) =
            self.store.replace(&key, &released.encode()?, Some(self.cfg.reservation_ttl)).await?
        else {
            return Ok(false);
        };
        let previous: Reservation = decode(&key, &previous)?;
        if previous.state != ReservationState::Reserved {
            // Another release won the swap between our read and our write.
            return Ok(false);
        }
        if !self.give_back(id, &released.lines).await {
            return Err(ServiceError::Unavailable(
                "reservation released but its stock could not all be returned".into(),
            ));
        }
        tracing::info!(reservation = %id, "stock released");
        Ok(true)
    }

    /// Takes every line's stock or, when one cannot be taken, none.
    async fn take(&self, id: &str, lines: &[Line], deadline: Instant) -> Result<(), ServiceError> {
        for (i, line) in lines.iter().enumerate() {
            let taken = &lines[..i];
            if Instant::now() > deadline {
                self.give_back(id, taken).await;
                return Err(ServiceError::Unavailable("reservation took too long, try again".into()));
            }
            let stock = model::stock_key(&line.article_id);
            match self.store.add_bounded(&stock, -line.units(), 0, i64::MAX, None).await {
                Ok(Bounded::Applied(_)) => {}
                Ok(Bounded::Refused(have)) => {
                    self.give_back(id, taken).await;
                    return Err(ServiceError::FailedPrecondition(format!(
                        "article {} has only {have} in stock",
                        line.article_id
                    )));
                }
                Err(e) => {
                    // This line may or may not have been taken; only the earlier ones surely were.
                    self.give_back(id, taken).await;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Adds each line's quantity back to its stock. Returns whether all of it went back; what did
    /// not is logged, as it is stock lost until someone corrects it.
    async fn give_back(&self, reservation: &str, lines: &[Line]) -> bool {
        let mut all = true;
        for line in lines {
            let stock = model::stock_key(&line.article_id);
            if let Err(cause) = self.store.add_bounded(&stock, line.units(), i64::MIN, i64::MAX, None).await {
                all = false;
                tracing::error!(
                    reservation,
                    article = %line.article_id,
                    quantity = line.quantity,
                    %cause,
                    "stock could not be given back"
                );
            }
        }
        all
    }

    /// The answer to a reservation id that is already claimed.
    async fn repeated(&self, id: &str) -> Result<ReserveStockResponse, ServiceError> {
        let existing = self.store.get_json::<Reservation>(&model::reservation_key(id)).await?;
        match existing.map(|r| (r.state, r)) {
            Some((ReservationState::Reserved, r)) => Ok(response(id.to_owned(), &r)),
            Some((ReservationState::Pending, _)) | None => {
                // In flight on another call (or just dropped by one that failed): retry shortly.
                Err(ServiceError::Aborted(format!("reservation {id} is in progress, try again")))
            }
            Some((ReservationState::Released, _)) => {
                Err(ServiceError::FailedPrecondition(format!("reservation {id} was released")))
            }
        }
    }
}

fn response(reservation_id: String, reservation: &Reservation) -> ReserveStockResponse {
    ReserveStockResponse { reservation_id, lines: reservation.lines.iter().map(Line::to_proto).collect() }
}
