//! Cross-process fan-out, measured: N subscribers in one room on each of two server processes
//! sharing one local Redis, one publisher on each process, a fixed publish rate. Reports
//! deliveries per second, deliveries per server CPU-second (both processes' CPU from /proc,
//! Redis's apart) and publish-to-delivery latency p50/p99. Speaks wsloop's demo chat or
//! Socket.IO 4 (Engine.IO v4 over WebSocket) with the same connections and timing.
//!
//! ```text
//! cargo bench --bench cluster -- --kind wsloop|socketio --a 127.0.0.1:PORT --b 127.0.0.1:PORT \
//!     --pids PID_A,PID_B [--redis-pid PID] [-m 500] [--rate 100] [-t 10] [--warmup 2]
//! ```
//!
//! `--a` and `--b` may be the same address: then all subscribers and both publishers are on one
//! process (the in-process broadcast baseline). Driven by `benches/cluster.sh`. One thread and
//! one mio poll for every connection; loopback only; bounded in time.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use wsloop::handshake::client::{ClientHandshake, ResponseStatus};
use wsloop::protocol::{Config, OwnedEvent, WebSocket};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Wsloop,
    SocketIo,
}

struct Conn {
    stream: TcpStream,
    ws: WebSocket,
    /// Handshake bytes until the 101 is parsed.
    head: Option<(ClientHandshake, Vec<u8>)>,
    ready: bool,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn send(c: &mut Conn, text: &str) {
    let mut out = Vec::new();
    if c.ws.send_text(text, &mut out).is_ok() {
        let mut at = 0;
        // Small messages on loopback: the socket takes them; retry a would-block briefly.
        while at < out.len() {
            match c.stream.write(&out[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("write: {e}"),
            }
        }
    }
}

/// The send timestamp (µs since `t0`) in a delivered message, if it is a benchmark message.
fn stamp(text: &str) -> Option<u64> {
    let i = text.find("BENCH:")? + 6;
    let digits: String = text[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && arg(&args, "--a").is_none() {
        return; // `cargo bench` with no arguments: nothing to drive
    }
    let kind = match arg(&args, "--kind").as_deref() {
        Some("socketio") => Kind::SocketIo,
        _ => Kind::Wsloop,
    };
    let a: SocketAddr = arg(&args, "--a").expect("--a HOST:PORT").parse().unwrap();
    let b: SocketAddr = arg(&args, "--b").expect("--b HOST:PORT").parse().unwrap();
    let m: usize = arg(&args, "-m").map_or(500, |v| v.parse().unwrap());
    let rate: f64 = arg(&args, "--rate").map_or(100.0, |v| v.parse().unwrap());
    let secs: f64 = arg(&args, "-t").map_or(10.0, |v| v.parse().unwrap());
    let warmup: f64 = arg(&args, "--warmup").map_or(2.0, |v| v.parse().unwrap());
    let pids: Vec<u32> = arg(&args, "--pids")
        .map(|v| v.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    let redis_pid: Option<u32> = arg(&args, "--redis-pid").and_then(|v| v.parse().ok());

    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<Conn> = Vec::new();
    // Subscribers: m on each process; then the two publishers (index 2m, 2m+1).
    let targets: Vec<SocketAddr> = (0..2 * m + 2).map(|i| if i % 2 == 0 { a } else { b }).collect();
    for (i, addr) in targets.iter().enumerate() {
        let std = std::net::TcpStream::connect(addr).expect("connect");
        std.set_nodelay(true).unwrap();
        std.set_nonblocking(true).unwrap();
        let mut stream = TcpStream::from_std(std);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .unwrap();
        let hs = ClientHandshake::new(&[]);
        let path = match kind {
            Kind::Wsloop => format!("/chat?room=bench&name=c{i}"),
            Kind::SocketIo => "/socket.io/?EIO=4&transport=websocket".to_owned(),
        };
        let req = hs.request(&addr.to_string(), &path, &[]);
        let mut c = Conn {
            stream,
            ws: WebSocket::client(Config::default()),
            head: Some((hs, Vec::new())),
            ready: false,
        };
        loop {
            match c.stream.write(&req) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("write: {e}"),
            }
        }
        conns.push(c);
    }
    let t0 = Instant::now();
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 256 * 1024];
    let mut latencies: Vec<u32> = Vec::new();
    let mut delivered_window = 0u64;
    let mut delivered_total = 0u64;
    let mut ready = 0usize;
    let subscribers = 2 * m;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next_send: Option<Instant> = None;
    let mut seq = 0u64;
    let mut window: Option<(Instant, f64, f64)> = None; // (start, server cpu, redis cpu)
    let mut result: Option<(f64, f64, f64)> = None;
    let setup_deadline = Instant::now() + Duration::from_secs(60);
    let mut run_start: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if run_start.is_none() && now > setup_deadline {
            panic!("only {ready} of {} connections ready", conns.len());
        }
        if let Some(start) = run_start {
            let elapsed = now.duration_since(start).as_secs_f64();
            if window.is_none() && elapsed >= warmup {
                let cpu: f64 = pids.iter().map(|&p| cpu_secs(p)).sum();
                window = Some((now, cpu, redis_pid.map_or(0.0, cpu_secs)));
                delivered_window = 0;
                latencies.clear();
            }
            if elapsed >= warmup + secs && result.is_none() {
                if let Some((ws, cpu0, r0)) = window {
                    let wall = now.duration_since(ws).as_secs_f64();
                    let cpu = pids.iter().map(|&p| cpu_secs(p)).sum::<f64>() - cpu0;
                    let rcpu = redis_pid.map_or(0.0, cpu_secs) - r0;
                    result = Some((wall, cpu, rcpu));
                }
                break;
            }
        }
        let timeout = next_send.map(|t| t.saturating_duration_since(now).min(Duration::from_millis(50)));
        poll.poll(&mut events, timeout.or(Some(Duration::from_millis(50))))
            .unwrap();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i) else { continue };
            loop {
                let n = match c.stream.read(&mut buf) {
                    Ok(0) => panic!("connection {i} closed by the server"),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read {i}: {e}"),
                };
                let mut data = buf[..n].to_vec();
                if let Some((hs, head)) = c.head.as_mut() {
                    head.extend_from_slice(&data);
                    match hs.parse_response(head).expect("101") {
                        ResponseStatus::Partial => continue,
                        ResponseStatus::Accepted { head_len, .. } => {
                            data = head[head_len..].to_vec();
                            c.head = None;
                            if kind == Kind::Wsloop {
                                c.ready = true;
                                ready += 1;
                            }
                        }
                    }
                }
                let mut out = Vec::new();
                let evs = c.ws.receive_all(&mut data, &mut out).expect("valid frames");
                if !out.is_empty() {
                    let _ = c.stream.write(&out);
                }
                for e in evs {
                    let OwnedEvent::Text(t) = e else { continue };
                    if kind == Kind::SocketIo {
                        if t.starts_with('0') {
                            send(c, "40");
                            continue;
                        }
                        if t.starts_with("40") && !c.ready {
                            send(c, "42[\"join\",\"bench\"]");
                            c.ready = true;
                            ready += 1;
                            continue;
                        }
                        if t == "2" {
                            send(c, "3");
                            continue;
                        }
                    }
                    if let Some(sent) = stamp(&t) {
                        if i < subscribers {
                            delivered_total += 1;
                            delivered_window += 1;
                            let now_us = t0.elapsed().as_micros() as u64;
                            latencies.push(now_us.saturating_sub(sent).min(u32::MAX as u64) as u32);
                        }
                    }
                }
            }
        }
        if run_start.is_none() && ready == conns.len() {
            // Let join notices settle, then go.
            eprintln!("{ready} connections ready in {:.1} s", t0.elapsed().as_secs_f64());
            run_start = Some(Instant::now());
            next_send = Some(Instant::now());
        }
        if let Some(t) = next_send {
            if Instant::now() >= t {
                for p in [subscribers, subscribers + 1] {
                    let text = format!("BENCH:{} #{seq}", t0.elapsed().as_micros());
                    let msg = match kind {
                        Kind::Wsloop => text,
                        Kind::SocketIo => format!("42[\"msg\",\"bench\",\"{text}\"]"),
                    };
                    send(&mut conns[p], &msg);
                    seq += 1;
                }
                next_send = Some(t + interval);
            }
        }
    }
    let (wall, cpu, rcpu) = result.expect("measured");
    latencies.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let idx = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        f64::from(latencies[idx]) / 1000.0
    };
    let expected = 2.0 * rate * wall * subscribers as f64;
    println!(
        "{{\"kind\":\"{}\",\"subscribers\":{subscribers},\"publish_rate\":{},\"secs\":{wall:.2},\"deliveries\":{delivered_window},\"expected\":{expected:.0},\"deliveries_per_sec\":{:.0},\"server_cpu_secs\":{cpu:.3},\"deliveries_per_server_cpu_sec\":{:.0},\"redis_cpu_secs\":{rcpu:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"total\":{delivered_total}}}",
        if kind == Kind::Wsloop { "wsloop" } else { "socketio" },
        2.0 * rate,
        delivered_window as f64 / wall,
        delivered_window as f64 / cpu.max(1e-9),
        pct(0.5),
        pct(0.99)
    );
}
