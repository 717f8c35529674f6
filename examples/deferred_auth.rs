//! Decisions that wait on I/O: a token checked against a slow "database" before the upgrade,
//! and an HTTP route answered after a lookup, without blocking the event loop.
//!
//! A pool of 8 worker threads stands in for the database; each lookup takes 100 ms.
//!
//! - `GET /ws?token=T` (WebSocket): decided after the lookup. A token starting with `valid-`
//!   is accepted and the user (`valid-ada` → `ada`) kept as the connection's state; any other
//!   is refused with 401.
//! - `GET /users/{name}`: answered after a lookup, with a body naming the user.
//! - `GET /ping`: answered at once, however many lookups are pending.
//!
//! cargo run --release --example deferred_auth -- --bind 127.0.0.1:9001

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wsloop::handshake::Request;
use wsloop::server::http::query_value;
use wsloop::server::{
    Accept, Context, Handler, Message, PendingResponse, PendingUpgrade, RequestContext, Response, Server,
};

/// How long the pretend database takes per lookup.
const LOOKUP: Duration = Duration::from_millis(100);
const WORKERS: usize = 8;

/// A lookup for the pool, with the token that answers it.
enum Job {
    Token(String, PendingUpgrade<String>),
    User(String, PendingResponse),
}

/// A fixed pool of threads taking jobs from one queue.
struct Pool(Mutex<Sender<Job>>);

impl Pool {
    fn new(workers: usize) -> Pool {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers {
            let rx = rx.clone();
            std::thread::spawn(move || loop {
                // The lock is held only to take a job, not while doing it.
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => run(job),
                    Err(_) => return, // the server is gone
                }
            });
        }
        Pool(Mutex::new(tx))
    }

    fn submit(&self, job: Job) {
        if let Ok(tx) = self.0.lock() {
            // A send fails only when every worker is gone; the token, dropped with the job,
            // then answers 500.
            let _ = tx.send(job);
        }
    }
}

/// One lookup: sleep as a database would, then decide. An error from the token means the
/// client left or the server stopped; there is nobody to tell.
fn run(job: Job) {
    std::thread::sleep(LOOKUP);
    let _ = match job {
        Job::Token(token, pending) => match token.strip_prefix("valid-") {
            Some(user) if !user.is_empty() => pending.accept(Accept::new(user.to_owned())),
            _ => pending.refuse(Response::text(401, "401 Unauthorized: unknown token\n")),
        },
        Job::User(name, pending) => pending.respond(Response::json(200, format!("{{\"user\":\"{name}\"}}"))),
    };
}

struct App {
    db: Pool,
}

impl Handler for App {
    /// The user the token belongs to.
    type State = String;

    fn on_request(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Response {
        match request.path() {
            "/ping" => Response::text(200, "pong\n"),
            path => match path.strip_prefix("/users/") {
                Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                    self.db.submit(Job::User(name.to_owned(), ctx.defer_response()));
                    Response::status(503) // not used: the response is pending
                }
                _ => Response::status(404),
            },
        }
    }

    fn on_upgrade(&self, request: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<String>, Response> {
        if request.path() != "/ws" {
            return Err(Response::status(404));
        }
        let Some(token) = query_value(request.query(), "token") else {
            return Err(Response::text(401, "401 Unauthorized: ?token= is required\n"));
        };
        self.db.submit(Job::Token(token, ctx.defer_upgrade::<String>()));
        Err(Response::status(503)) // not used: the decision is pending
    }

    fn on_open(&self, ctx: &mut Context<'_, String>) {
        let hello = format!("hello {}", ctx.state());
        ctx.send_text(&hello);
    }

    fn on_message(&self, ctx: &mut Context<'_, String>, message: Message<'_>) {
        ctx.send(message);
    }
}

fn main() -> std::io::Result<()> {
    let _ = wsloop::logging::init();
    let mut bind = "127.0.0.1:9001".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--bind", Some(addr)) => bind = addr,
            _ => {
                eprintln!("usage: deferred_auth [--bind ADDR]");
                std::process::exit(2);
            }
        }
    }
    let bind = bind
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--bind: {e}")))?;
    let server = Server::new(App { db: Pool::new(WORKERS) })
        .configure(|c| c.bind = bind)
        .start()?;
    println!("listening on {}", server.local_addr());
    server.run_until_signal()
}
