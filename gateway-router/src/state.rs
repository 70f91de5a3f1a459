//! What every request of the router shares.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::pool::{Counters, Pool};
use crate::ratelimit::Limiter;

pub struct RouterState {
    pub cfg: Arc<Config>,
    pub pools: BTreeMap<String, Arc<Pool>>,
    pub limiter: Limiter,
    /// The metrics of answers given before any pool was chosen (`pool="none"`).
    pub unrouted: Counters,
    /// Spans are exported (an OpenTelemetry layer is installed), so every request gets its
    /// span at once; otherwise only one that logs does.
    pub traced: bool,
}
