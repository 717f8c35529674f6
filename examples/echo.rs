//! The smallest wsloop server: every WebSocket message comes back to its sender.
//!
//! cargo run --release --example echo        then connect to ws://127.0.0.1:9001

use wsloop::server::{Context, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        ctx.send(message);
    }
}

fn main() -> std::io::Result<()> {
    let _ = wsloop::logging::init();
    Server::new(Echo).bind("127.0.0.1:9001".parse().unwrap()).run()
}
