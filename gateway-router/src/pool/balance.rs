//! Which eligible instance gets the next request: power of two choices, least in-flight first,
//! then lower latency (EWMA).

use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;

use super::{Instance, Pool};

// === impl Pool ===

impl Pool {
    /// Power of two choices among eligible instances not in `exclude`.
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<Arc<Instance>> {
        let instances = self.instances();
        let eligible: Vec<&Arc<Instance>> =
            instances.iter().filter(|i| i.is_eligible() && !exclude.contains(&i.addr)).collect();
        match eligible.len() {
            0 => None,
            1 => Some(eligible[0].clone()),
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let mut b = rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (x, y) = (eligible[a], eligible[b]);
                let key = |i: &Instance| (i.in_flight(), i.ewma_micros());
                Some(if key(y) < key(x) { y.clone() } else { x.clone() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::pool::Outcome;
    use crate::pool::tests::pool;

    #[tokio::test]
    async fn picks_prefer_the_less_loaded_of_two() {
        let pool = pool(2);
        let busy = pool.instances()[0].clone();
        let _guards: Vec<_> = (0..5).map(|_| busy.start()).collect();
        for _ in 0..50 {
            assert_ne!(pool.pick(&[]).unwrap().addr, busy.addr);
        }
    }

    #[tokio::test]
    async fn excluded_instances_are_not_picked_and_membership_keeps_state() {
        let pool = pool(2);
        let first = pool.instances()[0].addr;
        for _ in 0..20 {
            assert_ne!(pool.pick(&[first]).unwrap().addr, first);
        }
        let kept = pool.instances()[1].clone();
        pool.record(&kept, Outcome::Failed);
        pool.set_addresses(vec![(kept.addr, "again".into())]);
        assert!(!pool.instances()[0].is_eligible(), "state survives a membership update");
    }
}
