//! Registration and login over real gRPC.

mod support;

use mesh_proto::auth::{LoginRequest, RegisterRequest};
use support::{PASSWORD, config, email, login, register, register_request, replica, verify_access_token};
use tonic::Code;

#[tokio::test]
async fn a_registered_user_logs_in_and_gets_a_verifiable_access_token() {
    let (_svc, mut client) = replica(config()).await;
    let address = email("ada");
    let registered = client.register(register_request(&address)).await.unwrap().into_inner();
    assert!(mesh_core::ids::is_id(&registered.user_id));
    assert_eq!(registered.roles, ["user"]);

    let pair = login(&client, &address).await;
    assert_eq!(pair.token_type, "Bearer");
    assert_eq!(pair.expires_in, 15 * 60);
    assert!(pair.refresh_token.starts_with("mr_"));

    let claims = verify_access_token(&client, &pair.access_token).await.unwrap();
    assert_eq!(claims.sub, registered.user_id);
    assert_eq!(claims.email, address);
    assert_eq!(claims.roles, ["user"]);
    assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("mesh-auth", "mesh"));
    assert!(mesh_core::ids::is_id(&claims.sid));
    assert!(mesh_core::ids::is_id(&claims.jti));
    assert_eq!(claims.exp - claims.iat, 15 * 60);
    assert!(claims.nbf <= mesh_core::ids::unix_now());

    // Each login is its own session.
    let again = verify_access_token(&client, &login(&client, &address).await.access_token).await.unwrap();
    assert_ne!(again.sid, claims.sid);
}

#[tokio::test]
async fn an_email_registers_once_whatever_its_case() {
    let (_svc, mut client) = replica(config()).await;
    let address = email("grace");
    register(&client, &address).await;
    for variant in [address.clone(), address.to_uppercase()] {
        let err = client.register(register_request(&variant)).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{variant:?}");
        assert_eq!(err.message(), "email already registered");
    }
    // Logging in works with any case of it too.
    login(&client, &address.to_uppercase()).await;
    // White space is refused, not trimmed: what is checked is what is kept (the contract's rule).
    let err = client.register(register_request(&format!("  {address}\t"))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn bad_registrations_are_invalid_argument_and_store_nothing() {
    let (_svc, mut client) = replica(config()).await;
    let address = email("linus");
    let with = |email: &str, password: &str, display_name: &str| RegisterRequest {
        email: email.into(),
        password: password.into(),
        display_name: display_name.into(),
    };
    let cases = [
        (with("", PASSWORD, "Ada"), "email"),
        (with("no-at-sign.example.com", PASSWORD, "Ada"), "email"),
        (with(&format!("{}@x.com", "a".repeat(250)), PASSWORD, "Ada"), "email"),
        (with(&address, "short", "Ada"), "password"),
        (with(&address, "", "Ada"), "password"),
        (with(&address, &"ab".repeat(65), "Ada"), "password"),
        (with(&address, "aaaaaaaaaaaaaa", "Ada"), "password"),
        (with(&address, &address.to_uppercase(), "Ada"), "password"),
        (with(&address, PASSWORD, ""), "display_name"),
        (with(&address, PASSWORD, &"x".repeat(65)), "display_name"),
        (with(&address, PASSWORD, "Ada\u{0}Lovelace"), "display_name"),
        (with(&address, PASSWORD, "Ada\nLovelace"), "display_name"),
    ];
    for (req, field) in cases {
        let err = client.register(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err:?}");
        assert!(err.message().starts_with(&format!("{field}:")), "{req:?}: {}", err.message());
    }
    // None of the refused attempts claimed the email.
    let err =
        client.login(LoginRequest { email: address.clone(), password: PASSWORD.into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    register(&client, &address).await;
    login(&client, &address).await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_fail_identically() {
    let (_svc, mut client) = replica(config()).await;
    let address = email("ken");
    register(&client, &address).await;
    let wrong_password = client
        .login(LoginRequest { email: address.clone(), password: "not the password".into() })
        .await
        .unwrap_err();
    let unknown_email =
        client.login(LoginRequest { email: email("nobody"), password: PASSWORD.into() }).await.unwrap_err();
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(unknown_email.code(), Code::Unauthenticated);
    assert_eq!(wrong_password.message(), "invalid email or password");
    assert_eq!(wrong_password.message(), unknown_email.message());
}

#[tokio::test]
async fn login_input_is_checked_before_any_lookup() {
    let (_svc, mut client) = replica(config()).await;
    let cases = [
        (LoginRequest { email: String::new(), password: PASSWORD.into() }, "email"),
        (LoginRequest { email: "ada@example.com".into(), password: String::new() }, "password"),
        (LoginRequest { email: "ada@example.com".into(), password: "x".repeat(10_000) }, "password"),
    ];
    for (req, field) in cases {
        let err = client.login(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(&format!("{field}:")), "{}", err.message());
    }
}

#[tokio::test]
async fn an_admin_email_gets_the_admin_role_in_its_tokens() {
    let admin = email("root");
    let mut cfg = config();
    cfg.admin_emails = vec![format!(" {} ", admin.to_uppercase())];
    let (_svc, mut client) = replica(cfg).await;

    let registered = client.register(register_request(&admin)).await.unwrap().into_inner();
    assert_eq!(registered.roles, ["user", "admin"]);
    let claims = verify_access_token(&client, &login(&client, &admin).await.access_token).await.unwrap();
    assert_eq!(claims.roles, ["user", "admin"]);

    let someone = email("someone");
    register(&client, &someone).await;
    let claims = verify_access_token(&client, &login(&client, &someone).await.access_token).await.unwrap();
    assert_eq!(claims.roles, ["user"]);
}
