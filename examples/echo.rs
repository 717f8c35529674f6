//! The smallest wsloop server: every WebSocket message comes back to its sender.
//!
//! cargo run --release --example echo        then connect to ws://127.0.0.1:9001

use wsloop::handshake::Request;
use wsloop::server::{Accept, Context, Handler, Message, RequestContext, Response, Server};

struct Echo;

impl Handler for Echo {
    /// Nothing to remember per connection.
    type State = ();

    /// Every upgrade is accepted (the server has already checked RFC 6455 §4.2.1 and the
    /// Origin policy).
    fn on_upgrade(&self, _: &Request, _: &mut RequestContext<'_>) -> Result<Accept, Response> {
        Ok(Accept::default())
    }

    fn on_message(&self, ctx: &mut Context<'_>, message: Message<'_>) {
        ctx.send(message);
    }
}

fn main() -> std::io::Result<()> {
    let _ = wsloop::logging::init();
    Server::new(Echo)
        .configure(|c| c.bind = "127.0.0.1:9001".parse().unwrap())
        .run()
}
