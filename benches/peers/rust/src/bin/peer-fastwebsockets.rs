//! Peer server for the wsloop benchmarks, built on fastwebsockets + hyper
//! (the `upgrade` feature, as in fastwebsockets' own examples).
//!
//! Usage: `peer-fastwebsockets PORT [--tls-cert FILE --tls-key FILE]`
//! (listens on 127.0.0.1:PORT; with the two files it serves `wss://`:
//! hyper and fastwebsockets over a tokio-rustls stream, rustls with the ring
//! provider set up as wsloop sets it up, see `wsloop_peers::tls_acceptor`).
//!
//! * `/echo`: every text/binary message is sent back unchanged
//!   (`FragmentCollector`, auto pong and auto close as the library defaults).
//! * `/chat`: every text/binary message is sent to every client connected on
//!   `/chat` (the sender included). fastwebsockets has no public API to write
//!   pre-framed bytes, so each connection frames the shared payload itself.
//!
//! Single-threaded (tokio `current_thread` runtime + `LocalSet`; the TLS
//! handshake runs in the connection's task on that thread too), no
//! compression (fastwebsockets has none).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use tokio::io::BufWriter;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What a `/chat` connection's writer task is asked to send.
enum Out {
    /// A broadcast message: payload shared by all receivers.
    Data(OpCode, Bytes),
    /// A frame the reader is obliged to send (pong, close reply).
    Control(OpCode, Vec<u8>),
}

type Clients = Rc<RefCell<HashMap<u64, mpsc::UnboundedSender<Out>>>>;

fn main() -> anyhow::Result<()> {
    let args = wsloop_peers::Args::parse(9002)?;
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
        eprintln!("peer-fastwebsockets listening on {scheme}://127.0.0.1:{port}");
        let clients: Clients = Rc::default();
        let next_id = Rc::new(RefCell::new(0u64));
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::task::yield_now().await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let clients = clients.clone();
            let next_id = next_id.clone();
            let tls = tls.clone();
            tokio::task::spawn_local(async move {
                let service = service_fn(move |req| {
                    let clients = clients.clone();
                    let next_id = next_id.clone();
                    async move { route(req, clients, next_id) }
                });
                let http = http1::Builder::new();
                // hyper hands the upgraded connection over type-erased, so
                // only the serving differs between TCP and TLS.
                let result = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            http.serve_connection(io, service).with_upgrades().await
                        }
                        Err(e) => {
                            eprintln!("tls: {e}");
                            return;
                        }
                    },
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        http.serve_connection(io, service).with_upgrades().await
                    }
                };
                if let Err(e) = result {
                    eprintln!("http: {e}");
                }
            });
        }
    })
}

fn route(
    mut req: Request<Incoming>,
    clients: Clients,
    next_id: Rc<RefCell<u64>>,
) -> anyhow::Result<Response<Empty<Bytes>>> {
    let path = req.uri().path().to_owned();
    if (path != "/echo" && path != "/chat") || !upgrade::is_upgrade_request(&req) {
        let mut resp = Response::new(Empty::new());
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return Ok(resp);
    }
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn_local(async move {
        let result = if path == "/echo" {
            echo(fut).await
        } else {
            let id = {
                let mut n = next_id.borrow_mut();
                *n += 1;
                *n
            };
            chat(fut, id, clients).await
        };
        if let Err(e) = result {
            eprintln!("{path}: {e}");
        }
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> anyhow::Result<()> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            // The close reply was already sent by auto-close.
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn chat(fut: upgrade::UpgradeFut, id: u64, clients: Clients) -> anyhow::Result<()> {
    let ws = fut.await?;
    // The write half goes through a BufWriter so the writer task can push a
    // whole batch of queued broadcasts with one flush (one write syscall).
    let (rx, tx) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, BufWriter::new(w))
    });
    let mut rx = FragmentCollectorRead::new(rx);
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<Out>();
    clients.borrow_mut().insert(id, queue_tx.clone());

    let writer = tokio::task::spawn_local(async move {
        let mut tx = tx;
        while let Some(first) = queue_rx.recv().await {
            let mut next = Some(first);
            while let Some(out) = next {
                match out {
                    Out::Data(opcode, payload) => {
                        tx.write_frame(Frame::new(true, opcode, None, Payload::Borrowed(&payload)))
                            .await?
                    }
                    Out::Control(opcode, payload) => {
                        tx.write_frame(Frame::new(true, opcode, None, Payload::Owned(payload)))
                            .await?
                    }
                }
                next = queue_rx.try_recv().ok();
            }
            tx.flush().await?;
        }
        Ok::<_, anyhow::Error>(())
    });

    let result = async {
        loop {
            // Obligated frames (pong, close reply) go through our own queue so
            // they are ordered with the broadcasts.
            let control = queue_tx.clone();
            let mut send_fn = move |f: Frame<'_>| {
                let sent = control.send(Out::Control(f.opcode, f.payload.to_vec()));
                async move { sent.map_err(|_| anyhow::anyhow!("writer gone")) }
            };
            let frame = rx.read_frame(&mut send_fn).await?;
            match frame.opcode {
                OpCode::Close => return Ok(()),
                OpCode::Text | OpCode::Binary => {
                    let payload = Bytes::copy_from_slice(&frame.payload);
                    for q in clients.borrow().values() {
                        let _ = q.send(Out::Data(frame.opcode, payload.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    .await;
    // Unregister, then let the writer flush what is queued (e.g. the close
    // reply) and stop once the last sender is gone.
    clients.borrow_mut().remove(&id);
    drop(queue_tx);
    match result {
        Ok(()) => writer.await??,
        Err(e) => {
            writer.abort();
            return Err(e);
        }
    }
    Ok(())
}
