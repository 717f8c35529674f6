//! examples/jwt.rs, run as the example's own code: a valid token reaches every callback as the
//! connection's state; a bad one gets 401 before the 101 on /strict, and Close 4401 with the
//! reason on /app.

mod common;
#[path = "../examples/jwt.rs"]
#[allow(dead_code)]
mod jwt;

use common::{http, Client};
use wsloop::protocol::OwnedEvent;
use wsloop::server::Server;
use wsloop::CloseCode;

const SECRET: &[u8] = b"test secret";

#[test]
fn tokens_are_checked_before_the_upgrade_or_answered_with_4401() {
    let server = Server::new(jwt::JwtApp::new(SECRET))
        .configure(|c| {
            c.bind = "127.0.0.1:0".parse().unwrap();
            c.threads = 1;
        })
        .start()
        .unwrap();
    let addr = server.local_addr();
    let token = jwt::mint(SECRET, "ada");

    // Header and query string both work; the claims are the state.
    let bearer = format!("Bearer {token}");
    let mut c = Client::connect_with(addr, "/strict", &[("Authorization", &bearer)], &[]);
    assert_eq!(c.next(), Some(OwnedEvent::Text("hello ada".into())));
    c.send_text("hi");
    assert_eq!(c.next(), Some(OwnedEvent::Text("ada: hi".into())));
    let mut c = Client::connect(addr, &format!("/app?token={token}"));
    assert_eq!(c.next(), Some(OwnedEvent::Text("hello ada".into())));

    // /strict: 401 before the 101, for a missing, forged or foreign token.
    let upgrade = |path: &str, extra: &str| {
        http(
            addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
        )
    };
    let (status, head, body) = upgrade("/strict", "");
    assert_eq!(status, 401);
    assert!(
        head.contains("WWW-Authenticate: Bearer") && body.contains("no token"),
        "{head}{body}"
    );
    let forged = jwt::mint(b"another secret", "mallory");
    assert_eq!(
        upgrade("/strict", &format!("Authorization: Bearer {forged}\r\n")).0,
        401
    );
    assert_eq!(upgrade(&format!("/strict?token={token}x"), "").0, 401);

    // /app: the upgrade succeeds, then Close 4401 with the reason a page can show.
    let mut c = Client::connect(addr, &format!("/app?token={forged}"));
    match c.next() {
        Some(OwnedEvent::Close(Some((code, reason)))) => {
            assert_eq!(code, CloseCode(4401));
            assert!(reason.starts_with("invalid token"), "{reason}");
        }
        other => panic!("expected Close 4401, got {other:?}"),
    }
}
