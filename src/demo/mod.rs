//! The demo application that `wsloop serve` runs: the binary's own module, not part of the
//! library, built on the public [`Handler`] API only, like any embedding application would be
//! (the integration tests include this file the same way):
//!
//! | path                       | HTTP                            | WebSocket                                    |
//! |----------------------------|---------------------------------|----------------------------------------------|
//! | `/`                        | `GET`: the chat page            | echo                                         |
//! | `/health`                  | `GET`: JSON status              | —                                            |
//! | `/metrics`                 | `GET`: Prometheus text          | —                                            |
//! | `/echo`                    | —                               | echoes every message, text and binary        |
//! | `/chat?room=R&name=N`      | —                               | chat rooms with presence (below)             |
//! | `/rooms/{room}/messages`   | `POST`: the body goes to the room | —                                          |
//! | `/learn`                   | `GET`: the handshake/frame lesson | explains the handshake, then each frame    |
//!
//! **Chat protocol.** A client joins room `R` (default `lobby`) as `N` (default `guest-…`)
//! by its upgrade's query string; what the room and name are is decided once, in
//! `on_upgrade`, and kept as the connection's state. Text it sends is a chat message; binary
//! is passed to the room as it is. The server sends JSON text:
//!
//! - `{"type":"welcome","id":ID,"room":R,"name":N}` to the new member;
//! - `{"type":"join"|"leave","id":ID,"name":N,"room":R,"online":K}` to the room (a leave
//!   also has `code` and `reason`);
//! - `{"type":"presence","room":R,"members":[{"id":ID,"name":N},…],"online":K}` to the new
//!   member only, after its welcome: who is there. From then on join and leave notices keep
//!   its list current — a room of N members costs N small notices per join, not N full lists;
//! - `{"type":"message","room":R,"id":SENDER,"from":N,"text":T,"ts":MILLIS,"mid":MID}` for
//!   each message (`ts`: the server's clock, Unix milliseconds; HTTP posts come
//!   `"from":"http"`; `mid`: the message's place in the room's history, a
//!   [`HistoryId`](wsloop::server::HistoryId) such as `"1718000000000-0"`, or `""` when it could not be
//!   recorded — the message bus was unreachable);
//! - `{"type":"resync","room":R}` when a client came back with `since` and the server cannot
//!   replay everything it missed (too old, or history unreachable): the page says so and goes
//!   on live.
//!
//! **Reconnecting.** A client that comes back with `&since=MID` (the last `mid` it saw) first
//! gets every message of its room recorded after that one, in order, then live messages, none
//! missed and none twice (see `history.rs`); or the `resync` notice. Chat messages (WebSocket
//! and HTTP) are recorded; presence notices are not. With `--redis` the history is shared by
//! every process, so a client may come back to another process than the one it left.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use wsloop::explain::{self, push_json_str};
use wsloop::handshake::Request;
use wsloop::server::http::query_value;
use wsloop::server::{Accept, ConnId, Context, Handler, Message, RequestContext, Response, ServerInfo, Stamped};
use wsloop::CloseCode;

/// The chat page served at `/`.
pub const INDEX_HTML: &str = include_str!("assets/index.html");

/// The room a `/chat` client joins when it names none.
pub const DEFAULT_ROOM: &str = "lobby";

/// Members listed at most in a presence message (the count is always exact).
const PRESENCE_LIST_MAX: usize = 1000;

/// The topic of a chat room.
pub fn room_topic(room: &str) -> String {
    format!("room:{room}")
}

/// Whether a room name is acceptable: 1–32 letters, digits, `-` or `_`.
pub fn valid_room(room: &str) -> bool {
    (1..=32).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A `/chat` member: decided at the upgrade, kept with the connection.
#[derive(Debug, Clone)]
pub struct Member {
    /// The room joined.
    pub room: String,
    /// The nickname shown to others.
    pub name: String,
}

/// The demo application.
#[derive(Debug, Default)]
pub struct DemoApp {
    /// Room → members (this process's).
    rooms: Mutex<HashMap<String, BTreeMap<ConnId, String>>>,
}

impl DemoApp {
    /// The demo.
    pub fn new() -> Self {
        DemoApp::default()
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<ConnId, String>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or removes a member; returns the presence JSON and the room's size.
    fn presence(&self, room: &str, change: impl FnOnce(&mut BTreeMap<ConnId, String>)) -> (String, usize) {
        let mut rooms = self.rooms();
        let members = rooms.entry(room.to_owned()).or_default();
        change(members);
        let online = members.len();
        let mut json = String::from("{\"type\":\"presence\",\"room\":");
        push_json_str(&mut json, room);
        json.push_str(",\"members\":[");
        for (i, (id, name)) in members.iter().take(PRESENCE_LIST_MAX).enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!("{{\"id\":\"{id}\",\"name\":"));
            push_json_str(&mut json, name);
            json.push('}');
        }
        json.push_str(&format!("],\"online\":{online}}}"));
        if online == 0 {
            rooms.remove(room);
        }
        (json, online)
    }
}

/// Unix milliseconds now.
fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The JSON of a recorded chat message, up to its id: `prefix + MID + MESSAGE_SUFFIX`
/// (see [`Stamped`]).
pub fn message_prefix(room: &str, sender: Option<ConnId>, from: &str, text: &str) -> String {
    let mut json = message_json(room, sender, from, text);
    json.pop();
    json.push_str(",\"mid\":\"");
    json
}

/// What follows the id of a recorded chat message.
pub const MESSAGE_SUFFIX: &str = "\"}";

/// The notice for a client whose `since` cannot be answered in full.
pub fn resync_json(room: &str) -> String {
    let mut json = String::from("{\"type\":\"resync\",\"room\":");
    push_json_str(&mut json, room);
    json.push('}');
    json
}

/// The JSON of a chat message (without its history id).
pub fn message_json(room: &str, sender: Option<ConnId>, from: &str, text: &str) -> String {
    let mut json = String::from("{\"type\":\"message\",\"room\":");
    push_json_str(&mut json, room);
    json.push_str(",\"id\":");
    match sender {
        Some(id) => json.push_str(&format!("\"{id}\"")),
        None => json.push_str("null"),
    }
    json.push_str(",\"from\":");
    push_json_str(&mut json, from);
    json.push_str(",\"text\":");
    push_json_str(&mut json, text);
    json.push_str(&format!(",\"ts\":{}}}", now_ms()));
    json
}

fn notice(kind: &str, id: ConnId, member: &Member, online: usize) -> String {
    let mut json = format!("{{\"type\":\"{kind}\",\"id\":\"{id}\",\"name\":");
    push_json_str(&mut json, &member.name);
    json.push_str(",\"room\":");
    push_json_str(&mut json, &member.room);
    json.push_str(&format!(",\"online\":{online}"));
    json
}

const PAGES: [&str; 4] = ["/", "/health", "/learn", "/metrics"];

impl Handler for DemoApp {
    /// `/chat` connections are members of a room; the other paths keep nothing. Boxed: 8 bytes
    /// on every connection instead of the 48 of two inline `String`s, since most connections
    /// (`/echo`, `/learn`) are not members.
    type State = Option<Box<Member>>;

    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        let path = request.path();
        if let Some(room) = path.strip_prefix("/rooms/").and_then(|r| r.strip_suffix("/messages")) {
            return post_to_room(request, ctx, room);
        }
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
                    "{{\"status\":\"ok\",\"connections\":{},\"websockets\":{},\"uptime_seconds\":{},\"memory_used\":{},\"bus\":{}}}",
                    info.open_connections(),
                    info.open_websockets(),
                    info.uptime().as_secs(),
                    info.memory_used(),
                    bus_json(info)
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

    fn on_upgrade(
        &self,
        request: &Request,
        _ctx: &mut RequestContext<'_>,
    ) -> Result<Accept<Option<Box<Member>>>, Response> {
        match request.path() {
            "/" | "/echo" => Ok(Accept::new(None).keep_request(false)),
            // The lesson decodes frames one by one, compressed ones too (RFC 7692).
            "/learn" => Ok(Accept::new(None).capture_frames().keep_request(false)),
            "/chat" => {
                let room = query_value(request.query(), "room").unwrap_or_else(|| DEFAULT_ROOM.to_owned());
                if !valid_room(&room) {
                    return Err(Response::text(400, "room: 1-32 letters, digits, '-' or '_'\n"));
                }
                let name = query_value(request.query(), "name")
                    .map(|n| {
                        n.trim()
                            .chars()
                            .filter(|c| !c.is_control())
                            .take(32)
                            .collect::<String>()
                    })
                    .filter(|n| !n.is_empty())
                    .unwrap_or_default();
                Ok(Accept::new(Some(Box::new(Member { room, name }))).keep_request(false))
            }
            _ => Err(Response::status(404)),
        }
    }

    fn on_open(&self, ctx: &mut Context<'_, Option<Box<Member>>>) {
        let id = ctx.id();
        if let Some(member) = ctx.state_mut() {
            if member.name.is_empty() {
                member.name = format!("guest-{}", id.to_string().rsplit('.').nth(1).unwrap_or("0"));
            }
        }
        match ctx.state().clone() {
            Some(member) => {
                let topic = room_topic(&member.room);
                let mut welcome = format!("{{\"type\":\"welcome\",\"id\":\"{id}\",\"room\":");
                push_json_str(&mut welcome, &member.room);
                welcome.push_str(",\"name\":");
                push_json_str(&mut welcome, &member.name);
                welcome.push('}');
                ctx.send_text(&welcome);
                match query_value(ctx.query(), "since").filter(|s| !s.is_empty()) {
                    Some(since) => {
                        let resync = resync_json(&member.room);
                        ctx.subscribe_since(&topic, &since, Message::Text(&resync));
                    }
                    None => ctx.subscribe(&topic),
                }
                let name = member.name.clone();
                let (presence, online) = self.presence(&member.room, |m| {
                    m.insert(id, name);
                });
                let mut join = notice("join", id, &member, online);
                join.push('}');
                ctx.publish(&topic, Message::Text(&join));
                ctx.send_text(&presence);
            }
            None if ctx.path() == "/learn" => {
                let policy = ctx.deflate_policy();
                if let Some((request, response)) = ctx.handshake() {
                    let json = explain::handshake_json_deflate(request, response, policy.as_ref());
                    ctx.send_text(&json);
                }
            }
            None => {}
        }
    }

    fn on_message(&self, ctx: &mut Context<'_, Option<Box<Member>>>, message: Message<'_>) {
        if let Some(member) = ctx.state() {
            let topic = room_topic(&member.room);
            match message {
                Message::Text(text) => {
                    let prefix = message_prefix(&member.room, Some(ctx.id()), &member.name, text);
                    ctx.publish_recorded(&topic, Stamped::text(&prefix, MESSAGE_SUFFIX));
                }
                Message::Binary(_) => ctx.publish(&topic, message),
            }
            return;
        }
        if ctx.path() == "/learn" {
            // Echo, then explain both sides: the browser's frames as they arrived (masked,
            // compressed if it compressed) and the echo exactly as it went out.
            ctx.send(message);
            let json = explain::frames_json_deflate(ctx.frames_in(), ctx.frames_out(), ctx.deflate_params().as_ref());
            ctx.send_text(&json);
            return;
        }
        ctx.send(message);
    }

    fn on_close(&self, ctx: &mut Context<'_, Option<Box<Member>>>, code: CloseCode, reason: &str) {
        let Some(member) = ctx.state().clone() else { return };
        let id = ctx.id();
        let (_, online) = self.presence(&member.room, |m| {
            m.remove(&id);
        });
        let mut leave = notice("leave", id, &member, online);
        leave.push_str(&format!(",\"code\":{},\"reason\":", code.0));
        push_json_str(&mut leave, reason);
        leave.push('}');
        let topic = room_topic(&member.room);
        ctx.publish(&topic, Message::Text(&leave));
    }
}

/// `POST /rooms/{room}/messages`: an HTTP route that triggers a broadcast — the body (UTF-8
/// text) goes to the room's WebSockets as a chat message from "http".
fn post_to_room(request: &Request, ctx: &mut RequestContext<'_>, room: &str) -> Response {
    if request.method() != "POST" {
        return Response::status(405).with_header("Allow", "POST");
    }
    if !valid_room(room) {
        return Response::text(400, "room: 1-32 letters, digits, '-' or '_'\n");
    }
    let Ok(text) = std::str::from_utf8(request.body()) else {
        return Response::text(400, "the body must be UTF-8 text\n");
    };
    let prefix = message_prefix(room, None, "http", text);
    match ctx.publish_recorded(&room_topic(room), Stamped::text(&prefix, MESSAGE_SUFFIX)) {
        Ok(()) => Response::json(202, "{\"status\":\"published\"}"),
        // The bus's queue is full or the room would pass --history-rooms: refused, visibly,
        // rather than buffered without bound or dropped after a 202 (RFC 9110 §15.6.4).
        Err(_) => {
            Response::text(503, "cannot record this message now; try again later\n").with_header("Retry-After", "1")
        }
    }
}

/// `/health`'s `bus` field: `null` without one, else its state and counters.
fn bus_json(info: &ServerInfo) -> String {
    match info.bus() {
        None => "null".to_owned(),
        Some(b) => {
            let mut json = String::from("{\"engine\":");
            push_json_str(&mut json, &b.engine);
            json.push_str(&format!(
                ",\"connected\":{},\"published\":{},\"received\":{},\"dropped\":{}}}",
                b.connected, b.published, b.received, b.dropped
            ));
            json
        }
    }
}
