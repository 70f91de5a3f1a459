//! The `analytics-service` binary: health, admin endpoints, and a clean exit on SIGTERM.

#[tokio::test]
async fn the_binary_serves_health_and_admin_and_exits_cleanly_on_sigterm() {
    mesh_tests::lifecycle::check_binary_lifecycle(
        env!("CARGO_BIN_EXE_analytics-service"),
        "mesh.analytics.v1.AnalyticsService",
    )
    .await
    .unwrap();
}
