//! Guessing one account's password through every gateway replica at once meets one shared,
//! growing lockout; the owner's right password waits it out too, and no other account or
//! address notices.

mod support;

use std::time::{Duration, Instant};

use support::PASSWORD;
use support::identity::{IdentityMesh, Reply, Shape, client_from};

/// The lockout after the first failure past the free ones (5); 3 s leaves the follow-up requests
/// ample time on a loaded machine while keeping the test short.
const BASE: Duration = Duration::from_secs(3);

fn assert_throttled(reply: &Reply, at_most: Duration, at_least: Duration, what: &str) {
    assert_eq!(reply.status, 429, "{what}: {reply:?}");
    assert_eq!(reply.content_type, "application/problem+json", "{what}");
    let seconds = reply.retry_after.unwrap_or_else(|| panic!("{what}: no Retry-After"));
    // Retry-After is the lock's remaining time rounded up to whole seconds.
    let (lo, hi) = (at_least.as_secs(), at_most.as_secs() + u64::from(at_most.subsec_nanos() > 0));
    assert!((lo.max(1)..=hi).contains(&seconds), "{what}: Retry-After {seconds}s, expected {lo}..={hi}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_stuffing_on_one_account_is_throttled_across_replicas() {
    let mesh = IdentityMesh::start(Shape {
        auth_replicas: 2,
        gateways: 2,
        // Cheap but still argon2id: the attack here is on the throttle, not on hashing.
        auth_env: &[("MESH_PASSWORD_HASH__MEMORY_KIB", "256"), ("MESH_PASSWORD_HASH__ITERATIONS", "1")],
        gateway_env: &[("MESH_THROTTLE__LOGIN_PER_ACCOUNT__BASE_LOCKOUT", "3s")],
    })
    .await;
    let attacker = client_from("127.0.3.1".parse().unwrap());
    let owner = client_from("127.0.3.2".parse().unwrap());
    let bystander = client_from("127.0.3.3".parse().unwrap());
    mesh.register(0, &owner, "victim@example.com").await;
    mesh.register(1, &bystander, "other@example.com").await;
    mesh.register(0, &attacker, "attacker@example.com").await;

    // Five free failures, spread over both gateways, then the sixth earns the first lockout.
    for n in 0..6 {
        let reply = mesh.login(n % 2, &attacker, "victim@example.com", "wrong password!").await;
        assert_eq!(reply.status, 401, "failure {} of 6: {reply:?}", n + 1);
    }
    let locked_at = Instant::now();
    let guess = mesh.login(1, &attacker, "victim@example.com", "wrong password!").await;
    assert_throttled(
        &guess,
        BASE,
        BASE.saturating_sub(locked_at.elapsed()),
        "a seventh guess on the other gateway",
    );
    // The owner, from another address and with the right password, is refused while it lasts.
    let right = mesh.login(0, &owner, "victim@example.com", PASSWORD).await;
    assert_throttled(
        &right,
        BASE,
        BASE.saturating_sub(locked_at.elapsed()),
        "the right password while locked",
    );
    // The lock is the account's: the attacker's address still logs in to its own account, and
    // another address to another account, on either gateway.
    assert_eq!(mesh.login(0, &attacker, "attacker@example.com", PASSWORD).await.status, 200);
    assert_eq!(mesh.login(1, &bystander, "other@example.com", PASSWORD).await.status, 200);
    let first = locked_at.elapsed();

    // A client that waits as told gets one more guess; its failure doubles the lockout.
    tokio::time::sleep(Duration::from_secs(guess.retry_after.unwrap())).await;
    let reply = mesh.login(1, &attacker, "victim@example.com", "wrong password!").await;
    assert_eq!(reply.status, 401, "the guess after the lockout: {reply:?}");
    let relocked_at = Instant::now();
    let again = mesh.login(0, &attacker, "victim@example.com", "wrong password!").await;
    assert_throttled(
        &again,
        2 * BASE,
        (2 * BASE).saturating_sub(relocked_at.elapsed()),
        "after the seventh failure",
    );
    assert!(again.retry_after > guess.retry_after, "the lockout grew: {again:?} after {guess:?}");

    // Once it is over, the right password works, and the success resets the account: a typo
    // afterwards is an ordinary 401, not a lockout.
    tokio::time::sleep(Duration::from_secs(again.retry_after.unwrap())).await;
    let ok = mesh.login(1, &owner, "victim@example.com", PASSWORD).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let typo = mesh.login(0, &owner, "victim@example.com", "correct horse battery?").await;
    assert_eq!(typo.status, 401, "{typo:?}");
    assert_eq!(mesh.login(1, &owner, "victim@example.com", PASSWORD).await.status, 200);
    println!(
        "credential stuffing over 2 gateways x 2 auth: 6 failures -> locked {}s (Retry-After on the other gateway {}s, right password refused {}s, other account/address 200 within {:.0} ms); 7th failure -> {}s; after it: right password 200, account reset",
        BASE.as_secs(),
        guess.retry_after.unwrap(),
        right.retry_after.unwrap(),
        first.as_secs_f64() * 1000.0,
        again.retry_after.unwrap(),
    );
}
