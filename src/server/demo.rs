//! The demo application that `wsloop serve` runs, built on the public [`Handler`] API like any
//! embedding application would be:
//!
//! | path      | HTTP `GET`                 | WebSocket                                              |
//! |-----------|----------------------------|--------------------------------------------------------|
//! | `/`       | chat page (HTML + JS)      | echo                                                   |
//! | `/health` | JSON status                | —                                                      |
//! | `/metrics`| Prometheus text            | —                                                      |
//! | `/echo`   | —                          | echoes every message, text and binary                  |
//! | `/chat`   | —                          | broadcasts every message to everyone on `/chat`, with join/leave notices |
//! | `/learn`  | the handshake/frame lesson | sends the handshake explained, then explains each frame |

use super::{Accept, Context, Handler, Message, RequestContext, Response};
use crate::explain;
use crate::frame::{self, CloseCode, Opcode};
use crate::handshake::Request;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The chat page served at `/`.
pub const INDEX_HTML: &str = include_str!("assets/index.html");

/// The topic every `/chat` connection subscribes to.
pub const CHAT_TOPIC: &str = "chat";

/// The demo application.
#[derive(Debug, Default)]
pub struct DemoApp {
    chat_members: AtomicUsize,
}

impl DemoApp {
    /// The demo.
    pub fn new() -> Self {
        DemoApp::default()
    }
}

const PAGES: [&str; 4] = ["/", "/health", "/learn", "/metrics"];

impl Handler for DemoApp {
    type State = ();

    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        let path = request.path();
        if !PAGES.contains(&path) {
            return Response::status(404);
        }
        if !matches!(request.method(), "GET" | "HEAD") {
            return Response::status(405).with_header("Allow", "GET, HEAD");
        }
        let info = ctx.info();
        match path {
            "/health" => Response::json(
                200,
                format!(
                    "{{\"status\":\"ok\",\"connections\":{},\"websockets\":{},\"uptime_seconds\":{}}}",
                    info.open_connections(),
                    info.open_websockets(),
                    info.uptime().as_secs()
                ),
            ),
            "/metrics" => Response {
                content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
                ..Response::text(200, info.prometheus())
            },
            "/learn" => Response::html(200, explain::LEARN_HTML),
            _ => Response::html(200, INDEX_HTML),
        }
    }

    fn on_upgrade(&self, request: &Request, _ctx: &mut RequestContext<'_>) -> Result<Accept, Response> {
        match request.path() {
            "/" | "/echo" | "/chat" => Ok(Accept::default().keep_request(false)),
            "/learn" => Ok(Accept::default().capture_frames().keep_request(false)),
            _ => Err(Response::status(404)),
        }
    }

    fn on_open(&self, ctx: &mut Context<'_>) {
        match ctx.path() {
            "/chat" => {
                let online = self.chat_members.fetch_add(1, Ordering::AcqRel) + 1;
                ctx.subscribe(CHAT_TOPIC);
                let notice = format!("{{\"type\":\"join\",\"id\":\"{}\",\"online\":{online}}}", ctx.id());
                ctx.publish(CHAT_TOPIC, Message::Text(&notice));
            }
            "/learn" => {
                if let Some((request, response)) = ctx.handshake() {
                    let json = explain::handshake_json(request, response);
                    ctx.send_text(&json);
                }
            }
            _ => {}
        }
    }

    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        match ctx.path() {
            "/chat" => ctx.publish(CHAT_TOPIC, message),
            "/learn" => {
                // Echo, then explain both frames: the browser's as it arrived (masked) and
                // ours as it was sent (unmasked; a server's frames are deterministic).
                let mut sent = Vec::new();
                let (opcode, payload) = match message {
                    Message::Text(t) => (Opcode::Text, t.as_bytes()),
                    Message::Binary(b) => (Opcode::Binary, b),
                };
                frame::encode_frame(&mut sent, true, opcode, None, payload);
                let json = explain::frames_json(ctx.frames_in(), &sent);
                ctx.send(message);
                ctx.send_text(&json);
            }
            _ => {
                ctx.send(message);
            }
        }
    }

    fn on_close(&self, ctx: &mut Context<'_>, code: CloseCode, reason: &str) {
        if ctx.path() == "/chat" {
            let online = self.chat_members.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
            let mut notice = format!(
                "{{\"type\":\"leave\",\"id\":\"{}\",\"online\":{online},\"code\":{},\"reason\":",
                ctx.id(),
                code.0
            );
            explain::push_json_str(&mut notice, reason);
            notice.push('}');
            ctx.publish(CHAT_TOPIC, Message::Text(&notice));
        }
    }
}
