//! Authenticating WebSockets with a JSON Web Token (HS256), checked in `on_upgrade`; the
//! token's claims become the connection's state.
//!
//! ```sh
//! JWT_SECRET=change-me cargo run --release --example jwt            # serves ws://127.0.0.1:9003
//! JWT_SECRET=change-me cargo run --release --example jwt -- mint ada   # prints a token for "ada"
//! ```
//!
//! The token comes from `Authorization: Bearer TOKEN` or, for browsers (whose WebSocket API
//! cannot set headers), from `?token=TOKEN`. Two ways to refuse a bad one, on two paths:
//!
//! - **`/strict`: `401` before the `101`.** Nothing is upgraded and nothing of the application
//!   runs; a non-browser client reads the status and the body. But a browser's `WebSocket` only
//!   reports a failed connection (close code 1006, no status, no reason): the page cannot tell
//!   "bad token" from "server down", and will usually retry.
//! - **`/app`: accept, then close with `4401` and a reason.** The upgrade succeeds and the server
//!   at once sends Close `4401` ("invalid token: ..."); the page's `onclose` sees the code and the
//!   reason and can ask the user to log in again instead of retrying. The price: an
//!   unauthenticated client gets a WebSocket for a moment (the handler must not act on it, so
//!   the state says it is not authenticated and `on_message` checks).

use jsonwebtoken::{decode, encode, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use wsloop::handshake::Request;
use wsloop::server::http::query_value;
use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
use wsloop::CloseCode;

/// What the token says; kept as the connection's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Who the client is.
    pub sub: String,
    /// Expiry, Unix seconds (checked by `Validation`).
    pub exp: u64,
}

/// Issues a token for `sub`, valid for an hour.
pub fn mint(secret: &[u8], sub: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 3600;
    let claims = Claims {
        sub: sub.to_owned(),
        exp,
    };
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
}

/// The token from `Authorization: Bearer ...` or `?token=...`.
fn token(req: &Request) -> Option<String> {
    if let Some(h) = req.header_str("authorization") {
        return h.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    query_value(req.query(), "token")
}

/// The application: `/strict` and `/app`, an echo that says who you are.
pub struct JwtApp {
    key: DecodingKey,
}

impl JwtApp {
    /// An app verifying HS256 tokens signed with `secret`.
    pub fn new(secret: &[u8]) -> Self {
        JwtApp {
            key: DecodingKey::from_secret(secret),
        }
    }

    fn verify(&self, req: &Request) -> Result<Claims, String> {
        let token = token(req).ok_or("no token")?;
        decode::<Claims>(&token, &self.key, &Validation::default())
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

impl Handler for JwtApp {
    /// The verified claims, or why the token was refused (only on `/app`, until it closes).
    type State = Result<Claims, String>;

    fn on_upgrade(&self, req: &Request, _: &mut RequestContext<'_>) -> Result<Accept<Self::State>, Response> {
        let verdict = self.verify(req);
        match (req.path(), verdict) {
            ("/strict", Ok(claims)) | ("/app", Ok(claims)) => Ok(Accept::new(Ok(claims)).keep_request(false)),
            ("/strict", Err(why)) => {
                Err(Response::text(401, format!("401 Unauthorized: {why}\n")).with_header("WWW-Authenticate", "Bearer"))
            }
            ("/app", Err(why)) => Ok(Accept::new(Err(why)).keep_request(false)),
            _ => Err(Response::status(404)),
        }
    }

    fn on_open(&self, ctx: &mut Context<'_, Self::State>) {
        match ctx.state() {
            Ok(claims) => {
                let hello = format!("hello {}", claims.sub);
                ctx.send_text(&hello);
            }
            Err(why) => {
                // 4000-4999 are for applications (RFC 6455 §7.4.2); 4401 echoes HTTP's 401.
                let reason = format!("invalid token: {why}");
                // Err only for a code that may not go on the wire, or a connection already
                // closing: neither can happen here, but a close that failed must not be silent.
                if let Err(e) = ctx.close(CloseCode(4401), &reason) {
                    eprintln!("could not close #{}: {e}", ctx.id());
                }
            }
        }
    }

    fn on_message(&self, ctx: &mut Context<'_, Self::State>, message: Message<'_>) {
        let Ok(claims) = ctx.state() else { return }; // never act for an unauthenticated client
        if let Message::Text(text) = message {
            let reply = format!("{}: {text}", claims.sub);
            ctx.send_text(&reply);
        }
    }
}

#[allow(dead_code)] // a test includes this file as a module and calls the rest
fn main() -> std::io::Result<()> {
    let _ = wsloop::logging::init();
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "change-me".to_owned());
    let args: Vec<String> = std::env::args().collect();
    if let [_, cmd, sub] = args.as_slice() {
        if cmd == "mint" {
            println!("{}", mint(secret.as_bytes(), sub));
            return Ok(());
        }
    }
    println!("ws://127.0.0.1:9003/strict and /app; mint a token with: cargo run --example jwt -- mint NAME");
    Server::new(JwtApp::new(secret.as_bytes()))
        .configure(|c| c.bind = "127.0.0.1:9003".parse().unwrap())
        .run()
}
