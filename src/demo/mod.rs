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
//! | `/rooms/{room}/events`     | `GET`: the room as Server-Sent Events | —                                      |
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
//!   `"from":"http"`, or their `?name=`; `mid`: the message's place in the room's history, a
//!   [`HistoryId`](wsloop::server::HistoryId) such as `"1718000000000-0"`, or `""` when it could not be
//!   recorded — the message bus was unreachable);
//! - `{"type":"resync","room":R}` when a client came back with `since` and the server cannot
//!   replay everything it missed (too old, or history unreachable): the page says so and goes
//!   on live.
//!
//! **Messages too big as JSON.** A chat message's text is escaped into the JSON above (RFC 8259
//! §7), and escaping can make it up to six times larger (`\u0001` for each control character).
//! What counts against `--max-message-size` is the JSON that would be sent, measured before it
//! is built: over the limit, or when four copies of it (the copies publishing makes, see
//! `JSON_COPIES`) do not fit the room the server admits messages by (what is left of the
//! budget below its shedding level, but never less than a fair share), the
//! message goes to no one and its sender is closed with `1009` and a reason saying which —
//! the answer the transport gives any message over the limit (RFC 6455 §7.4.1). An HTTP post
//! gets `413` (over the limit) or `503` with `Retry-After: 1` (the budget) instead of `202`.
//!
//! **Reconnecting.** A client that comes back with `&since=MID` (the last `mid` it saw) first
//! gets every message of its room recorded after that one, in order, then live messages, none
//! missed and none twice (see `history.rs`); or the `resync` notice. Chat messages (WebSocket
//! and HTTP) are recorded; presence notices are not. With `--redis` the history is shared by
//! every process, so a client may come back to another process than the one it left.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use wsloop::explain;
use wsloop::handshake::Request;
use wsloop::json::{self, push_str as push_json_str};
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
            let _ = write!(json, "{{\"id\":\"{id}\",\"name\":");
            push_json_str(&mut json, name);
            json.push('}');
        }
        let _ = write!(json, "],\"online\":{online}}}");
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

/// The most bytes a [`HistoryId`](super::HistoryId) takes as text: two `u64`s and a dash.
const MAX_MID_LEN: usize = 20 + 1 + 20;

/// Copies of a chat message's JSON alive at once while it is published: the prefix built
/// here, the history entry with its id filled in, the history ring's own copy, and the framed
/// message the subscribers' queues share. Only the last is charged to the memory budget, so a
/// message is refused unless all of them fit what is left of it.
const JSON_COPIES: usize = 4;

/// Why a chat message was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChatRefusal {
    /// Its JSON (the text escaped, RFC 8259 §7, plus the fields around it) would be over the
    /// server's message limit `limit` (`--max-message-size`): no subscriber could be sent it.
    /// (How far over is not known: the count stops at the limit.)
    TooBig {
        /// The limit.
        limit: usize,
    },
    /// Its JSON, `size` bytes, does not fit what is left of the memory budget now.
    OverBudget {
        /// The bytes the whole message would take.
        size: usize,
    },
}

impl ChatRefusal {
    /// A one-line reason, short enough for a Close frame (at most 123 bytes, RFC 6455 §5.5).
    fn reason(&self) -> String {
        match self {
            ChatRefusal::TooBig { limit } => {
                format!("message too big once escaped as JSON: over the limit of {limit} bytes")
            }
            ChatRefusal::OverBudget { size } => {
                format!("message of {size} bytes as JSON does not fit the memory budget now")
            }
        }
    }
}

/// The fields of a chat message before its text, up to `"text":`.
struct MessageHead<'a> {
    room: &'a str,
    /// `"ID"` or `null`.
    id: String,
    from: &'a str,
    /// Unix milliseconds.
    ts: String,
}

impl<'a> MessageHead<'a> {
    fn new(room: &'a str, sender: Option<ConnId>, from: &'a str) -> Self {
        MessageHead {
            room,
            id: sender.map_or_else(|| "null".to_owned(), |id| format!("\"{id}\"")),
            from,
            ts: now_ms().to_string(),
        }
    }

    /// The fixed parts, in order, around the three escaped strings (room, from, text).
    fn literals(&self) -> [&str; 6] {
        [
            "{\"type\":\"message\",\"room\":",
            ",\"id\":",
            &self.id,
            ",\"from\":",
            ",\"text\":",
            ",\"ts\":",
        ]
    }

    /// The bytes [`MessageHead::write`] writes for `text`, counted without building anything;
    /// `None` as soon as they pass `cap`.
    fn len_within(&self, text: &str, cap: usize) -> Option<usize> {
        let around = self.literals().iter().map(|l| l.len()).sum::<usize>()
            + json::escaped_len(self.room)
            + json::escaped_len(self.from)
            + 3 * 2
            + self.ts.len();
        let text_len = json::escaped_len_within(text, cap.checked_sub(around)?).ok()?;
        Some(around + text_len)
    }

    /// `{"type":"message","room":R,"id":ID,"from":F,"text":T,"ts":TS` (no closing brace).
    fn write(&self, out: &mut String, text: &str) {
        let [open, id_key, id, from_key, text_key, ts_key] = self.literals();
        out.push_str(open);
        json::write_str(out, self.room);
        out.push_str(id_key);
        out.push_str(id);
        out.push_str(from_key);
        json::write_str(out, self.from);
        out.push_str(text_key);
        json::write_str(out, text);
        out.push_str(ts_key);
        out.push_str(&self.ts);
    }
}

/// What goes between a recorded message's text fields and its id.
const MID_KEY: &str = ",\"mid\":\"";

/// The JSON of a recorded chat message, up to its id: `prefix + MID + MESSAGE_SUFFIX`
/// (see [`Stamped`]). The server builds it with [`checked_message_prefix`]; this is the
/// unchecked form the tests compare with.
#[cfg(test)]
fn message_prefix(room: &str, sender: Option<ConnId>, from: &str, text: &str) -> String {
    checked_message_prefix(room, sender, from, text, usize::MAX, None).unwrap_or_default()
}

/// The JSON of a recorded chat message up to its id, refused before anything is built when the whole message (at the
/// longest id) would be over `limit` bytes — the text's real, escaped size counts, so a
/// message of control characters (six bytes each as `\u00XX`) cannot pass a limit its raw
/// size passes, and the count stops at the limit — or, given the server's figures, would not
/// fit the memory budget ([`JSON_COPIES`] copies of it more than `ServerInfo::message_room`:
/// what is left below the shedding level, but never less than a fair share). Built in one buffer of its exact size: no per-character
/// allocation, no regrowth.
fn checked_message_prefix(
    room: &str,
    sender: Option<ConnId>,
    from: &str,
    text: &str,
    limit: usize,
    budget: Option<&ServerInfo>,
) -> Result<String, ChatRefusal> {
    let head = MessageHead::new(room, sender, from);
    let after_head = MID_KEY.len() + MAX_MID_LEN + MESSAGE_SUFFIX.len();
    let Some(head_len) = limit.checked_sub(after_head).and_then(|cap| head.len_within(text, cap)) else {
        return Err(ChatRefusal::TooBig { limit });
    };
    let prefix_len = head_len + MID_KEY.len();
    let size = head_len + after_head;
    if let Some(info) = budget {
        // The server's own admission rule: what is left below the shedding level, but never
        // less than this connection's fair share (squatters cannot refuse everyone's chat).
        if size.saturating_mul(JSON_COPIES) > info.message_room() {
            return Err(ChatRefusal::OverBudget { size });
        }
    }
    let mut json = String::with_capacity(prefix_len);
    head.write(&mut json, text);
    json.push_str(MID_KEY);
    Ok(json)
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

/// The JSON of a chat message (without its history id), for the tests.
#[cfg(test)]
pub fn message_json(room: &str, sender: Option<ConnId>, from: &str, text: &str) -> String {
    let head = MessageHead::new(room, sender, from);
    let mut json = String::with_capacity(head.len_within(text, usize::MAX).unwrap_or_default() + 1);
    head.write(&mut json, text);
    json.push('}');
    json
}

fn notice(kind: &str, id: ConnId, member: &Member, online: usize) -> String {
    let mut json = format!("{{\"type\":\"{kind}\",\"id\":\"{id}\",\"name\":");
    push_json_str(&mut json, &member.name);
    json.push_str(",\"room\":");
    push_json_str(&mut json, &member.room);
    let _ = write!(json, ",\"online\":{online}");
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
        if let Some(room) = path.strip_prefix("/rooms/").and_then(|r| r.strip_suffix("/events")) {
            return room_events(request, ctx, room);
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
                    "{{\"status\":\"ok\",\"connections\":{},\"websockets\":{},\"event_streams\":{},\"uptime_seconds\":{},\"memory_used\":{},\"bus\":{}}}",
                    info.open_connections(),
                    info.open_websockets(),
                    info.open_event_streams(),
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
                // Who is there first, then its own join notice: a connection gets what it
                // sends and what it publishes to itself in call order.
                ctx.send_text(&presence);
                let mut join = notice("join", id, &member, online);
                join.push('}');
                ctx.publish(&topic, Message::Text(&join));
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
                    let limit = ctx.max_message_size();
                    let checked = checked_message_prefix(
                        &member.room,
                        Some(ctx.id()),
                        &member.name,
                        text,
                        limit,
                        Some(ctx.info()),
                    );
                    match checked {
                        Ok(prefix) => ctx.publish_recorded(&topic, Stamped::text(&prefix, MESSAGE_SUFFIX)),
                        // The same answer the transport gives a message over the limit (RFC
                        // 6455 §7.4.1: too big to process): the sender learns why, the room
                        // gets nothing, and the page shows the reason and reconnects.
                        Err(refused) => {
                            // 1009 is a code that may go on the wire; a connection already
                            // closing has nothing more to be told.
                            let _ = ctx.close(CloseCode::MESSAGE_TOO_BIG, &refused.reason());
                        }
                    }
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
        let _ = write!(leave, ",\"code\":{},\"reason\":", code.0);
        push_json_str(&mut leave, reason);
        leave.push('}');
        let topic = room_topic(&member.room);
        ctx.publish(&topic, Message::Text(&leave));
    }
}

/// `POST /rooms/{room}/messages[?name=N]`: an HTTP route that triggers a broadcast — the body
/// (UTF-8 text) goes to the room's WebSockets and event streams as a chat message from `N`, or
/// "http".
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
    let limit = ctx.max_message_size();
    // `?name=N` (the chat page's fallback sends its name): shown as the sender, cleaned like
    // a `/chat` name; "http" without one.
    let from = query_value(request.query(), "name")
        .map(|n| {
            n.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(32)
                .collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "http".to_owned());
    match checked_message_prefix(room, None, &from, text, limit, Some(ctx.info())) {
        Ok(prefix) => {
            match ctx.publish_recorded(&room_topic(room), Stamped::text(&prefix, MESSAGE_SUFFIX)) {
                Ok(()) => Response::json(202, "{\"status\":\"published\"}"),
                // The bus's queue is full or the room would pass --history-rooms: refused,
                // visibly, rather than buffered without bound or dropped after a 202.
                Err(_) => Response::text(503, "cannot record this message now; try again later\n")
                    .with_header("Retry-After", "1"),
            }
        }
        // RFC 9110 §15.5.14: the content is larger than the server is willing to process.
        Err(refused @ ChatRefusal::TooBig { .. }) => Response::text(413, format!("{}\n", refused.reason())),
        // RFC 9110 §15.6.4: a temporary overload; the budget frees as queues drain.
        Err(refused) => Response::text(503, format!("{}\n", refused.reason())).with_header("Retry-After", "1"),
    }
}

/// The longest `Last-Event-ID` (or `since`) taken as one: a history id is at most
/// `MAX_MID_LEN` bytes; past this it is refused with 400 rather than parsed.
const MAX_LAST_EVENT_ID: usize = 64;

/// `GET /rooms/{room}/events`: the room as Server-Sent Events, for clients whose WebSocket
/// cannot get through. Each chat message is an event with `id:` its history id and `data:`
/// the JSON a `/chat` member gets (join and leave notices too, without an id). A reconnecting
/// `EventSource` sends `Last-Event-ID` (a first connect may give `?since=MID`): what followed
/// that message comes first, then live messages — or, when the history cannot cover it (a
/// garbage, trimmed or future id), an event named `resync`. `Accept` must name
/// `text/event-stream` (406 otherwise: this route has no other representation); an id longer
/// than any history id gets 400.
fn room_events(request: &Request, ctx: &mut RequestContext<'_>, room: &str) -> Response {
    if !matches!(request.method(), "GET" | "HEAD") {
        return Response::status(405).with_header("Allow", "GET, HEAD");
    }
    if !valid_room(room) {
        return Response::text(400, "room: 1-32 letters, digits, '-' or '_'\n");
    }
    let wants_events = request
        .header_values("accept")
        .flat_map(|v| v.split(|&b| b == b','))
        .filter_map(|range| std::str::from_utf8(range).ok())
        .any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("text/event-stream")
        });
    if !wants_events {
        // RFC 9110 §15.5.7: the only representation is an event stream.
        return Response::text(406, "this route answers Accept: text/event-stream only\n");
    }
    let last = request
        .header_str("last-event-id")
        .map(str::to_owned)
        .or_else(|| query_value(request.query(), "since"))
        .filter(|s| !s.trim().is_empty());
    if last.as_ref().is_some_and(|s| s.len() > MAX_LAST_EVENT_ID) {
        return Response::text(400, "Last-Event-ID: not a message id (too long)\n");
    }
    let topic = room_topic(room);
    let mut stream = ctx.event_stream();
    match last {
        Some(since) => stream.subscribe_since(&topic, &since, &resync_json(room)),
        None => stream.subscribe(&topic),
    };
    stream.retry(2000).open()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole message as subscribers get it, with the longest id.
    fn whole(prefix: &str) -> String {
        format!("{prefix}{}{MESSAGE_SUFFIX}", "9".repeat(MAX_MID_LEN))
    }

    #[test]
    fn the_escaped_size_is_what_counts_against_the_limit() {
        let text = "\u{1}".repeat(1000);
        let Ok(prefix) = checked_message_prefix("r", None, "http", &text, usize::MAX, None) else {
            panic!("no limit, no refusal");
        };
        let size = whole(&prefix).len();
        assert!(size > 6000, "each control character is six bytes: {size}");
        assert_eq!(prefix.capacity(), prefix.len(), "built in one buffer of its exact size");
        // The limit is met exactly at the escaped size (ts has as many digits in both calls),
        // though the raw text is a sixth of it.
        assert!(checked_message_prefix("r", None, "http", &text, size, None).is_ok());
        assert_eq!(
            checked_message_prefix("r", None, "http", &text, size - 1, None),
            Err(ChatRefusal::TooBig { limit: size - 1 })
        );
        assert_eq!(
            checked_message_prefix("r", None, "http", &text, 1500, None),
            Err(ChatRefusal::TooBig { limit: 1500 })
        );
        assert_eq!(
            checked_message_prefix("r", None, "http", "", 10, None),
            Err(ChatRefusal::TooBig { limit: 10 }),
            "a limit below the fixed fields"
        );
    }

    #[test]
    fn the_prefix_is_the_message_json_with_a_hole_for_its_id() {
        let text = "quote \" slash \\ line\n nul \u{0} sep \u{2028} café";
        let prefix = message_prefix("room-1", None, "a\"b", text);
        let json = message_json("room-1", None, "a\"b", text);
        let head = json.strip_suffix('}').unwrap_or_default();
        let cut = head.rfind(",\"ts\":").unwrap_or_default();
        assert!(prefix.starts_with(&head[..cut]), "{prefix} / {json}");
        assert!(prefix.ends_with(",\"mid\":\""));
        assert_eq!(
            &head[..cut],
            "{\"type\":\"message\",\"room\":\"room-1\",\"id\":null,\"from\":\"a\\\"b\",\"text\":\
             \"quote \\\" slash \\\\ line\\n nul \\u0000 sep \\u2028 café\""
        );
        assert_eq!(json.capacity(), json.len());
    }

    #[test]
    fn reasons_fit_a_close_frame() {
        for r in [
            ChatRefusal::TooBig { limit: usize::MAX },
            ChatRefusal::OverBudget { size: usize::MAX },
        ] {
            assert!(r.reason().len() <= 123, "{}", r.reason());
        }
    }
}
