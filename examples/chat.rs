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

    fn on_open(&self, ctx: &mut Context<'_, Member>) {
        let room = ctx.state().room.clone();
        ctx.subscribe(&room);
        ctx.publish_to_others(&room, Message::Text(&format!("{} joined", ctx.id())));
    }

    fn on_message(&self, ctx: &mut Context<'_, Member>, message: Message<'_>) {
        let room = ctx.state().room.clone();
        ctx.publish(&room, message); // framed once, queued for every member on every loop
    }

    fn on_close(&self, ctx: &mut Context<'_, Member>, code: CloseCode, _reason: &str) {
        let room = ctx.state().room.clone();
        ctx.publish(&room, Message::Text(&format!("{} left ({})", ctx.id(), code.0)));
    }
}

fn main() -> std::io::Result<()> {
    let _ = wsloop::logging::init();
    Server::new(Rooms)
        .configure(|c| c.bind = "127.0.0.1:9002".parse().unwrap())
        .run()
}
