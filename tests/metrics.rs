//! `/metrics` parsed by a real Prometheus parser (Python's prometheus_client), with the counts
//! checked against traffic the test made. Mandatory when WSLOOP_REQUIRE_INTEROP=1 (CI).

mod common;
#[path = "interop/harness.rs"]
mod harness;

use common::{demo_server, http, Client};
use harness::{expect_ok, prerequisites, probe, python, script};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;
use wsloop::CloseCode;

/// Samples by `name{k="v",...}` (labels sorted), as the parser printed them.
fn parse(stdout: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in stdout.lines().filter(|l| l.starts_with('[')) {
        // ["name", {"k": "v"}, value]
        let name = line.split('"').nth(1).unwrap().to_owned();
        let labels_start = line.find('{').unwrap();
        let labels_end = line.rfind('}').unwrap();
        let labels: Vec<String> = line[labels_start + 1..labels_end]
            .split(", ")
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.replace(": ", "=").replace('"', ""))
            .collect();
        let value: f64 = line[labels_end + 1..]
            .trim_matches(|c| c == ',' || c == ']' || c == ' ')
            .parse()
            .unwrap();
        let key = if labels.is_empty() {
            name
        } else {
            format!("{name}{{{}}}", labels.join(","))
        };
        samples.insert(key, value);
    }
    samples
}

#[test]
fn metrics_parse_with_the_reference_parser_and_count_what_happened() {
    let missing: Vec<String> = probe(&python(), &["-c", "import prometheus_client.parser"])
        .into_iter()
        .collect();
    if prerequisites(
        "metrics_parse_with_the_reference_parser_and_count_what_happened",
        "WSLOOP_REQUIRE_INTEROP",
        &missing,
        "pip install -r tests/interop/requirements.txt",
    )
    .is_err()
    {
        return;
    }
    let server = demo_server(|s| s);
    let addr = server.local_addr();
    // Traffic: two WebSockets, three messages in, a Close 4000 from the client, a refused
    // upgrade (404), a plain request.
    let mut a = Client::connect(addr, "/echo");
    let _b = Client::connect(addr, "/chat?room=m");
    for m in ["one", "two", "three"] {
        a.send_text(m);
        assert!(a.next().is_some());
    }
    a.close(CloseCode(4000), "done");
    assert!(a.wait_eof());
    let upgrade_404 = "GET /nowhere HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(http(addr, upgrade_404).0, 404);
    assert_eq!(http(addr, "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").0, 200);

    let mut cmd = Command::new(python());
    cmd.arg(script("parse_metrics.py"))
        .arg(format!("http://{addr}/metrics"));
    let out = expect_ok("parse_metrics.py", &mut cmd, Duration::from_secs(30));
    let m = parse(&out.stdout);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no sample {k} in:\n{}", out.stdout));
    assert_eq!(get("wsloop_handshakes_total{status=101}"), 2.0);
    assert_eq!(get("wsloop_handshakes_total{status=404}"), 1.0);
    assert_eq!(get("wsloop_close_codes_received_total{code=4000}"), 1.0);
    assert_eq!(get("wsloop_close_codes_sent_total{code=4000}"), 1.0, "the echoed Close");
    assert_eq!(get("wsloop_websockets_by_path{path=/chat}"), 1.0);
    assert_eq!(get("wsloop_websockets_by_path{path=/echo}"), 0.0);
    assert!(get("wsloop_messages_received_total{loop=0}") >= 3.0);
    assert!(get("wsloop_http_requests_total{status=200}") >= 1.0);
    assert!(get("wsloop_memory_budget_limit_bytes") == (1u64 << 30) as f64);
    assert!(get("wsloop_uptime_seconds") >= 0.0);
    assert_eq!(get("wsloop_websockets{loop=0}"), 1.0);
}
