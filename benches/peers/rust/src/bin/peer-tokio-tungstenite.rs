//! Peer server for the wsloop benchmarks, built on tokio-tungstenite.
//!
//! Usage: `peer-tokio-tungstenite PORT [--tls-cert FILE --tls-key FILE]`
//! (listens on 127.0.0.1:PORT; with the two files it serves `wss://` through
//! tokio-rustls, rustls with the ring provider set up as wsloop sets it up:
//! see `wsloop_peers::tls_acceptor`).
//!
//! * `/echo`: every text/binary message is sent back unchanged.
//! * `/chat`: every text/binary message is sent to every client connected on
//!   `/chat` (the sender included). tungstenite has no API to frame a message
//!   once and write the same bytes to many sockets, so each connection frames
//!   it itself; the payload (`Bytes`/`Utf8Bytes`) is shared, not copied.
//!
//! Single-threaded (tokio `current_thread` runtime + `LocalSet`; the TLS
//! handshake runs in the connection's task on that thread too), no
//! compression (tokio-tungstenite is built without its deflate feature).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

/// Outgoing queues of the clients currently connected on `/chat`.
type Clients = Rc<RefCell<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

fn main() -> anyhow::Result<()> {
    let args = wsloop_peers::Args::parse(9001)?;
    let port = args.port;
    let tls = match &args.tls {
        Some((cert, key)) => Some(wsloop_peers::tls_acceptor(cert, key)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        eprintln!("peer-tokio-tungstenite listening on {scheme}://127.0.0.1:{port}");
        let clients: Clients = Rc::default();
        let mut next_id = 0u64;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                // EMFILE and friends: keep serving the connections we have.
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            next_id += 1;
            let id = next_id;
            let clients = clients.clone();
            let tls = tls.clone();
            tokio::task::spawn_local(async move {
                let result = async {
                    stream.set_nodelay(true)?;
                    match tls {
                        Some(acceptor) => handle(acceptor.accept(stream).await?, id, clients).await,
                        None => handle(stream, id, clients).await,
                    }
                }
                .await;
                if let Err(e) = result {
                    eprintln!("connection {id}: {e}");
                }
            });
        }
    })
}

/// One connection, over TCP or over TLS on TCP.
async fn handle<S>(stream: S, id: u64, clients: Clients) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    // The handshake callback is the only place tungstenite shows the request
    // path; remember it for routing and refuse unknown paths with a 404.
    let is_chat = Rc::new(Cell::new(false));
    let flag = is_chat.clone();
    // The Result type is tungstenite's `Callback` signature, not ours.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match req.uri().path() {
            "/echo" => Ok(resp),
            "/chat" => {
                flag.set(true);
                Ok(resp)
            }
            _ => {
                let mut err = ErrorResponse::new(Some("not found".into()));
                *err.status_mut() = StatusCode::NOT_FOUND;
                Err(err)
            }
        }
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback).await?;

    if !is_chat.get() {
        // Echo. Pings are answered and the close handshake completed by
        // tungstenite itself while we keep polling the stream; it ends
        // (None) once the close handshake is done.
        while let Some(msg) = ws.next().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                ws.send(msg).await?;
            }
        }
        return Ok(());
    }

    // Broadcast: a writer task drains this client's queue, batching whatever
    // is queued into one flush.
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    clients.borrow_mut().insert(id, tx);
    let writer = tokio::task::spawn_local(async move {
        while let Some(msg) = rx.recv().await {
            sink.feed(msg).await?;
            while let Ok(more) = rx.try_recv() {
                sink.feed(more).await?;
            }
            sink.flush().await?;
        }
        Ok::<_, anyhow::Error>(())
    });
    let result = async {
        while let Some(msg) = source.next().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                for tx in clients.borrow().values() {
                    // A send error only means that client is going away.
                    let _ = tx.send(msg.clone());
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // Dropping our queue's sender ends the writer task.
    clients.borrow_mut().remove(&id);
    writer.abort();
    result
}
