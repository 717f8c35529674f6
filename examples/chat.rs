//! Chat rooms with a token check before the upgrade, in a minute's read.
//!
//! cargo run --release --example chat
//! then connect to ws://127.0.0.1:9002/room/lobby?token=letmein (any room name after /room/).

use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};
use wsloop::{handshake::Request, CloseCode};

struct Rooms;

/// What each connection carries from the upgrade on: its room.
struct Member {
    room: String,
}

impl Handler for Rooms {
    type State = Member;

    // Runs before the 101: refuse here, with a real HTTP status, and nothing is upgraded.
    fn on_upgrade(&self, req: &Request, _: &mut RequestContext<'_>) -> Result<Accept<Member>, Response> {
        let Some(room) = req.path().strip_prefix("/room/").filter(|r| !r.is_empty()) else {
            return Err(Response::status(404));
        };
        if req.query() != Some("token=letmein") {
            return Err(Response::text(401, "bad token\n"));
        }
        Ok(Accept::new(Member { room: room.to_owned() }))
    }

    // `with_state` hands over the state and the connection's actions side by side, so the
    // room is used where it lies (`ctx.subscribe(&ctx.state().room)` would not compile).
    fn on_open(&self, ctx: &mut Context<'_, Member>) {
        let joined = format!("{} joined", ctx.id());
        ctx.with_state(|member, ctx| {
            ctx.subscribe(&member.room);
            ctx.publish_to_others(&member.room, Message::Text(&joined));
        });
    }

    fn on_message(&self, ctx: &mut Context<'_, Member>, message: Message<'_>) {
        // Framed once, queued for every member on every loop.
        ctx.with_state(|member, ctx| ctx.publish(&member.room, message));
    }

    fn on_close(&self, ctx: &mut Context<'_, Member>, code: CloseCode, _reason: &str) {
        let left = format!("{} left ({})", ctx.id(), code.0);
        ctx.with_state(|member, ctx| ctx.publish(&member.room, Message::Text(&left)));
    }
}

fn main() -> std::io::Result<()> {
    let _ = wsloop::logging::init();
    Server::new(Rooms)
        .configure(|c| c.bind = "127.0.0.1:9002".parse().unwrap())
        .run()
}
