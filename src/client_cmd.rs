//! `wsloop client URL`: the binary's WebSocket client command (part of the binary, declared in
//! `main.rs`; the library's client is `wsloop::client`). Flags in, library calls out; the
//! modes and the exit statuses are documented in README.md.

use clap::Args;
use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wsloop::client::{
    Client, ClientEvent, ClientReader, ClientWriter, CloseStatus, Error, OwnedMessage, Phase, DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT,
};
use wsloop::explain::ClientTrace;
use wsloop::protocol::{Config, DEFAULT_MAX_MESSAGE_SIZE};
use wsloop::CloseCode;

/// Exit status: the close handshake ended with 1000, 1001 or a Close without a code.
const EXIT_CLEAN: u8 = 0;
/// Exit status: no connection (URL, TLS, DNS, connect, refused or invalid handshake), or a
/// timeout or I/O error.
const EXIT_ERROR: u8 = 1;
/// Exit status: the connection ended with any other close code — the server's, 1006 when it
/// dropped without a Close frame, or the one we failed it with when it broke the protocol.
const EXIT_CLOSE_CODE: u8 = 3;

#[derive(Args)]
pub struct ClientArgs {
    /// The server's URL: ws://HOST[:PORT][/PATH][?QUERY] or wss://… (TLS, port 443 by default).
    url: String,
    /// For wss://: trust the CA certificates in this PEM file instead of Mozilla's roots
    /// (e.g. a private or test CA).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// Add a request header (repeatable), e.g. -H 'Authorization: Bearer t0ken'.
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Offer a subprotocol (repeatable, in order of preference).
    #[arg(long = "protocol", value_name = "P")]
    protocols: Vec<String>,
    /// Send this Origin header.
    #[arg(long, value_name = "O")]
    origin: Option<String>,
    /// Offer permessage-deflate (RFC 7692); compress what we send when the server agrees.
    #[arg(long)]
    deflate: bool,
    /// Send stdin as binary messages, one per read of up to 64 KiB, instead of one text
    /// message per line; with --send, send MSG as a binary message.
    #[arg(long, conflicts_with = "echo")]
    binary: bool,
    /// Scripted: send MSG --count times, print the first --expect messages that come back,
    /// then close with 1000 and exit.
    #[arg(long, value_name = "MSG", conflicts_with_all = ["echo", "listen"])]
    send: Option<String>,
    /// With --send: how many times to send MSG.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "send")]
    count: u64,
    /// With --send: how many messages to wait for before closing (default: --count).
    #[arg(long, value_name = "N", requires = "send")]
    expect: Option<u64>,
    /// Send every message back as it came, text as text and binary as binary, until the server
    /// closes (what Autobahn's fuzzingserver asks of a client).
    #[arg(long, conflicts_with = "listen")]
    echo: bool,
    /// Do not read stdin: print what arrives until the server closes.
    #[arg(long)]
    listen: bool,
    /// Print the handshake and every frame both ways, explained (masking keys included); for
    /// wss://, the TLS handshake's outcome first (version, cipher suite, ALPN, SNI, certificate).
    #[arg(long)]
    trace: bool,
    /// Seconds allowed for connecting, then again for the opening handshake.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_CONNECT_TIMEOUT.as_secs_f64())]
    connect_timeout: f64,
    /// Seconds of silence after which the client pings the server, and gives up after as many
    /// again without an answer; with --send, the longest wait for each reply.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_READ_TIMEOUT.as_secs_f64())]
    read_timeout: f64,
    /// Seconds to wait for the server's Close and its closing of TCP after ours.
    #[arg(long, value_name = "S", default_value_t = DEFAULT_CLOSE_TIMEOUT.as_secs_f64())]
    close_timeout: f64,
    /// Largest message accepted, in bytes (over it: close 1009).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,
}

/// Seconds from the command line as a Duration: at least 1 ms, at most a year (what
/// `Duration::from_secs_f64` cannot hold, or NaN, would panic).
fn secs(s: f64) -> Duration {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    Duration::from_secs_f64(if s.is_nan() { YEAR } else { s.clamp(0.001, YEAR) })
}

pub fn run(args: ClientArgs) -> ExitCode {
    let mut builder = Client::builder(args.url.clone())
        .connect_timeout(secs(args.connect_timeout))
        .handshake_timeout(secs(args.connect_timeout))
        .read_timeout(Some(secs(args.read_timeout)))
        .close_timeout(secs(args.close_timeout))
        .deflate(args.deflate)
        .limits(
            Config::default()
                .max_message_size(args.max_message_size)
                .max_frame_size(args.max_message_size as u64),
        );
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("wsloop client: -H {h:?}: expected NAME:VALUE");
            return ExitCode::from(2);
        };
        builder = if name.trim().eq_ignore_ascii_case("origin") {
            builder.origin(value.trim())
        } else {
            builder.header(name.trim(), value.trim())
        };
    }
    if let Some(origin) = &args.origin {
        builder = builder.origin(origin.clone());
    }
    for p in &args.protocols {
        builder = builder.protocol(p.clone());
    }
    if let Some(ca) = &args.ca {
        builder = builder.tls_ca_file(ca.clone());
    }
    if args.trace {
        builder = builder.observer(Arc::new(ClientTrace::stdout()));
    }
    let client = match builder.connect() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Some(p) = client.protocol() {
        eprintln!("[connected, subprotocol {p:?}]");
    }
    if args.echo {
        echo(client)
    } else if let Some(msg) = &args.send {
        let message = if args.binary {
            OwnedMessage::Binary(msg.clone().into_bytes())
        } else {
            OwnedMessage::Text(msg.clone())
        };
        scripted(client, message, args.count, args.expect.unwrap_or(args.count))
    } else {
        let (reader, writer) = client.split();
        if !args.listen {
            let binary = args.binary;
            let stdin_writer = writer.clone();
            std::thread::spawn(move || send_stdin(&stdin_writer, binary));
        }
        receive_until_closed(reader, &writer)
    }
}

/// Interactive and --listen: print what arrives; ping after a silent read timeout, give up
/// after a second one.
fn receive_until_closed(mut reader: ClientReader, writer: &ClientWriter) -> ExitCode {
    let mut pinged = false;
    loop {
        match reader.recv() {
            Ok(ClientEvent::Close(status)) => return closed(status.as_ref()),
            Ok(event) => {
                pinged = false;
                print_event(&event);
            }
            Err(Error::Timeout(Phase::Read)) if !pinged && writer.ping(b"wsloop keepalive").is_ok() => pinged = true,
            Err(Error::Timeout(Phase::Read)) => {
                eprintln!("wsloop client: no answer from the server to a ping; giving up");
                let _ = writer.close(CloseCode::GOING_AWAY, "no answer");
                return ExitCode::from(EXIT_ERROR);
            }
            Err(e) => return fail(&e),
        }
    }
}

/// Stdin to messages: a text message per line (without its line ending), or with `binary` a
/// binary message per read. At end of input: Close 1000, and the reader finishes the handshake.
fn send_stdin(writer: &ClientWriter, binary: bool) {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    if binary {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if writer.send_binary(buf.get(..n).unwrap_or_default()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    } else {
        let mut line = String::new();
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let text = line.trim_end_matches('\n').trim_end_matches('\r');
                    if writer.send_text(text).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    eprintln!("wsloop client: stdin: {e} (send binary data with --binary)");
                    break;
                }
            }
        }
    }
    let _ = writer.close(CloseCode::NORMAL, "");
}

/// --echo: every data message goes back as it came.
fn echo(mut client: Client) -> ExitCode {
    loop {
        match client.recv() {
            Ok(ClientEvent::Close(status)) => return closed(status.as_ref()),
            Ok(event) => {
                if let Some(message) = event.into_message() {
                    if let Err(e) = client.send(message) {
                        return fail(&e);
                    }
                }
            }
            Err(e) => return fail(&e),
        }
    }
}

/// --send: `count` sends from a second thread while this one prints the first `expect`
/// messages back; then the full close handshake.
fn scripted(client: Client, message: OwnedMessage, count: u64, expect: u64) -> ExitCode {
    let (mut reader, writer) = client.split();
    let sending = {
        let writer = writer.clone();
        std::thread::spawn(move || {
            (0..count).try_for_each(|_| match &message {
                OwnedMessage::Text(t) => writer.send_text(t),
                OwnedMessage::Binary(b) => writer.send_binary(b),
            })
        })
    };
    let mut got = 0;
    while got < expect {
        match reader.recv() {
            Ok(ClientEvent::Close(status)) => {
                eprintln!("wsloop client: the server closed after {got} of {expect} messages");
                return closed(status.as_ref());
            }
            Ok(event @ (ClientEvent::Text(_) | ClientEvent::Binary(_))) => {
                got += 1;
                print_event(&event);
            }
            Ok(event) => print_event(&event),
            Err(e) => return fail(&e),
        }
    }
    match sending.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return fail(&e),
        Err(_) => return ExitCode::from(EXIT_ERROR),
    }
    let mut client = match Client::reunite(reader, writer) {
        Ok(c) => c,
        Err(_) => return ExitCode::from(EXIT_ERROR),
    };
    match client.close(CloseCode::NORMAL, "") {
        Ok(status) => closed(status.as_ref()),
        Err(e) => fail(&e),
    }
}

/// Data on stdout (text as is, binary as hex), everything else on stderr.
fn print_event(event: &ClientEvent) {
    let mut out = io::stdout().lock();
    let _ = match event {
        ClientEvent::Text(t) => writeln!(out, "{t}"),
        ClientEvent::Binary(b) => writeln!(out, "[binary, {} bytes] {}", b.len(), hex(b)),
        ClientEvent::Ping(p) => {
            eprintln!("[ping {}, answered]", hex(p));
            Ok(())
        }
        ClientEvent::Pong(p) => {
            eprintln!("[pong {}]", hex(p));
            Ok(())
        }
        ClientEvent::Close(_) => Ok(()),
    };
    let _ = out.flush();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// A refused upgrade, as the server sent it: the status line and headers, then the body, so a
/// 401's `WWW-Authenticate` or a 429's `Retry-After` is in front of the user (all on stderr;
/// stdout carries only messages).
fn print_refusal(r: &wsloop::client::Refusal) {
    let reason = if r.reason.is_empty() {
        wsloop::handshake::reason_phrase(r.status)
    } else {
        r.reason.as_str()
    };
    eprintln!("wsloop client: the server refused the upgrade: {} {reason}", r.status);
    for (name, value) in &r.headers {
        eprintln!("< {name}: {value}");
    }
    let body = r.body_text();
    if !body.is_empty() {
        eprintln!("<");
        for line in body.lines() {
            eprintln!("< {line}");
        }
    }
    if !r.complete {
        eprintln!(
            "[body cut: the server stopped, or it was over {} bytes]",
            wsloop::client::MAX_REFUSAL_BODY
        );
    }
}

/// The exit status for a finished close handshake.
fn closed(status: Option<&CloseStatus>) -> ExitCode {
    match status {
        None => {
            eprintln!("[closed, no status code]");
            ExitCode::from(EXIT_CLEAN)
        }
        Some(s) => {
            eprintln!("[closed: {} {:?}]", s.code, s.reason);
            if matches!(s.code, CloseCode::NORMAL | CloseCode::GOING_AWAY) {
                ExitCode::from(EXIT_CLEAN)
            } else {
                ExitCode::from(EXIT_CLOSE_CODE)
            }
        }
    }
}

fn fail(e: &Error) -> ExitCode {
    match e {
        Error::Refused(r) => print_refusal(r),
        e => eprintln!("wsloop client: {e}"),
    }
    match e {
        Error::Protocol(_) | Error::ClosedAbnormally => ExitCode::from(EXIT_CLOSE_CODE),
        _ => ExitCode::from(EXIT_ERROR),
    }
}
