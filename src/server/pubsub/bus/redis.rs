//! The Redis engine of the message bus: pub/sub for live messages, a Stream per topic for
//! history.
//!
//! - Live messages: `PUBLISH {prefix}:fanout` (topics, broadcasts) or
//!   `PUBLISH {prefix}:node:{node}` (`send_to` a connection on that node), pipelined per batch.
//! - Recorded messages: one Lua script per message ([`RECORD`]) does `XADD
//!   {prefix}:history:{topic} MAXLEN ~ N * …`, trims by age (`XTRIM MINID ~`), sets the key to
//!   expire after the age bound, and `PUBLISH`es the message with the id Redis just assigned.
//!   The streams are counted in a sorted set, `{prefix}:history-topics` (stream key → time of
//!   its last message), from which topics idle past the age bound are removed as the script
//!   runs: a message that would start a stream past `HistoryBounds::max_topics` is published
//!   live but not recorded, so a flood of distinct topics costs Redis at most that many
//!   streams (each trimmed to N entries, each expiring).
//!   Redis runs a script without interleaving anything else, so the order of a topic's stream
//!   is the order in which every subscriber receives its messages: what makes the replay seam
//!   exact (see `history.rs`).
//! - Replay: another script ([`SINCE`]) answers in one round trip: the entries after `since`
//!   if `since` is still in the stream (or is the last id the stream generated), else "too
//!   old".
//!
//! Every reply is network input: parsed by matching, never indexed or unwrapped.

use super::{BusError, BusPublisher, Channel, HistoryBounds, HistoryEntry, MessageBus, Record, SubscriberSink};
use crate::server::history::HistoryId;
use redis::{Connection, Value};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A reply slower than this means the connection is in trouble: it is dropped and reopened.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The subscriber wakes this often to see whether the server is shutting down.
const SUBSCRIBER_TICK: Duration = Duration::from_millis(500);

/// KEYS[1] stream, KEYS[2] the set of streams; ARGV: channel, max length, age bound (ms, 0:
/// none), head, tail, prefix, suffix, binary flag, max streams, head of the live (unrecorded)
/// form. Returns the id, or 0 when the stream would be one past the maximum: then the
/// message is published live, without an id, and nothing is stored.
///
/// The set's members are removed once idle past the age bound — their streams have expired
/// by then (each expires that long after its last message) — a removal amortised over the
/// messages that added them.
const RECORD: &str = r#"
local stream, topics = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl > 0 then
  redis.call('ZREMRANGEBYSCORE', topics, '-inf', string.format('(%.0f', now - ttl))
end
if not redis.call('ZSCORE', topics, stream) and redis.call('ZCARD', topics) >= tonumber(ARGV[9]) then
  redis.call('PUBLISH', ARGV[1], ARGV[10] .. ARGV[6] .. ARGV[7])
  return 0
end
local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[2], '*', 'b', ARGV[8], 'p', ARGV[6], 's', ARGV[7])
redis.call('ZADD', topics, now, stream)
if ttl > 0 then
  redis.call('XTRIM', stream, 'MINID', '~', string.format('%.0f', now - ttl))
  redis.call('PEXPIRE', stream, ttl)
  redis.call('PEXPIRE', topics, ttl)
end
redis.call('PUBLISH', ARGV[1], ARGV[4] .. id .. ARGV[5] .. ARGV[6] .. id .. ARGV[7])
return id
"#;

/// KEYS[1] stream; ARGV: since, max entries, age bound (ms, 0: none). Returns `{1, entries}`
/// when the entries after `since` are complete, `{0}` when `since` is gone (trimmed, expired,
/// older than the age bound, or never generated).
const SINCE: &str = r#"
local key, since = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return {0} end
local info = redis.call('XINFO', 'STREAM', key)
local last = nil
for i = 1, #info - 1, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
if last == since then return {1, {}} end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ms = tonumber(string.match(since, '^(%d+)-'))
  if ms == nil or ms < now - ttl then return {0} end
end
local max = tonumber(ARGV[2])
local r = redis.call('XRANGE', key, since, '+', 'COUNT', max + 2)
if #r == 0 or r[1][1] ~= since or #r > max + 1 then return {0} end
table.remove(r, 1)
return {1, r}
"#;

/// The Redis engine. `RedisBus::new("redis://127.0.0.1:6379")`; every server sharing a
/// Redis and a prefix is one cluster.
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    prefix: String,
    describe: String,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus").field("at", &self.describe).finish()
    }
}

impl RedisBus {
    /// An engine for the Redis at `url` (`redis://[:password@]host:port[/db]`). Only parses the
    /// URL: connecting happens on the bus threads, with retries.
    pub fn new(url: &str) -> Result<RedisBus, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError(format!("bad Redis URL: {e}")))?;
        let describe = match &client.get_connection_info().addr {
            redis::ConnectionAddr::Tcp(host, port) => format!("redis {host}:{port}"),
            redis::ConnectionAddr::Unix(path) => format!("redis {}", path.display()),
            other => format!("redis {other}"),
        };
        Ok(RedisBus {
            client,
            prefix: "wsloop".to_owned(),
            describe,
        })
    }

    /// The prefix of every key and channel (default `wsloop`): two clusters may share one
    /// Redis with different prefixes.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    fn channel(&self, c: Channel) -> String {
        match c {
            Channel::Fanout => format!("{}:fanout", self.prefix),
            Channel::Node(n) => format!("{}:node:{n:08x}", self.prefix),
        }
    }

    fn stream(&self, topic: &str) -> String {
        format!("{}:history:{topic}", self.prefix)
    }

    /// The sorted set counting the streams (see [`RECORD`]).
    fn topics(&self) -> String {
        format!("{}:history-topics", self.prefix)
    }

    fn connect(&self) -> Result<Connection, BusError> {
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(err)?;
        con.set_read_timeout(Some(IO_TIMEOUT)).map_err(err)?;
        con.set_write_timeout(Some(IO_TIMEOUT)).map_err(err)?;
        Ok(con)
    }
}

fn err(e: redis::RedisError) -> BusError {
    BusError(e.to_string())
}

fn load(con: &mut Connection, script: &str) -> Result<String, BusError> {
    redis::cmd("SCRIPT").arg("LOAD").arg(script).query(con).map_err(err)
}

struct Publisher {
    bus: RedisBus,
    con: Connection,
    record_sha: String,
    since_sha: String,
}

impl Publisher {
    /// Runs a script by its hash, loading it again if Redis forgot it (`SCRIPT FLUSH`).
    fn eval(&mut self, which: bool, build: impl Fn(&mut redis::Cmd)) -> Result<Value, BusError> {
        for attempt in 0..2 {
            let sha = if which { &self.record_sha } else { &self.since_sha };
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha);
            build(&mut cmd);
            match cmd.query::<Value>(&mut self.con) {
                Ok(v) => return Ok(v),
                Err(e) if attempt == 0 && e.code() == Some("NOSCRIPT") => {
                    self.record_sha = load(&mut self.con, RECORD)?;
                    self.since_sha = load(&mut self.con, SINCE)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        Err(BusError("script not loaded".into()))
    }
}

impl BusPublisher for Publisher {
    fn publish(&mut self, batch: &[(Channel, Vec<u8>)]) -> Result<(), BusError> {
        let mut pipe = redis::pipe();
        for (channel, bytes) in batch {
            pipe.cmd("PUBLISH")
                .arg(self.bus.channel(*channel))
                .arg(&bytes[..])
                .ignore();
        }
        pipe.query::<()>(&mut self.con).map_err(err)
    }

    fn record(&mut self, batch: &[Record], bounds: HistoryBounds) -> Result<Vec<bool>, BusError> {
        let fanout = self.bus.channel(Channel::Fanout);
        let topics = self.bus.topics();
        let ttl = bounds.ttl.as_millis().to_string();
        let max_len = bounds.max_len.max(1).to_string();
        let max_topics = bounds.max_topics.to_string();
        let mut pipe = redis::pipe();
        for r in batch {
            pipe.cmd("EVALSHA")
                .arg(&self.record_sha)
                .arg(2)
                .arg(self.bus.stream(&r.topic))
                .arg(&topics)
                .arg(&fanout)
                .arg(&max_len)
                .arg(&ttl)
                .arg(&r.head[..])
                .arg(&r.tail[..])
                .arg(&r.prefix[..])
                .arg(&r.suffix[..])
                .arg(if r.binary { "1" } else { "0" })
                .arg(&max_topics)
                .arg(super::wire::unrecorded_head(&r.head, &r.tail));
        }
        match pipe.query::<Vec<Value>>(&mut self.con) {
            // An id (recorded) or 0 (refused: past the maximum of streams).
            Ok(replies) => Ok(replies.iter().map(|v| !matches!(v, Value::Int(0))).collect()),
            Err(e) if e.code() == Some("NOSCRIPT") => {
                // Redis lost its script cache with this connection still open: reload for the
                // next batch; this one is dropped (some of it may have run: at most once).
                self.record_sha = load(&mut self.con, RECORD)?;
                self.since_sha = load(&mut self.con, SINCE)?;
                Err(err(e))
            }
            Err(e) => Err(err(e)),
        }
    }

    fn history(
        &mut self,
        topic: &str,
        since: HistoryId,
        bounds: HistoryBounds,
    ) -> Result<Option<Vec<HistoryEntry>>, BusError> {
        let stream = self.bus.stream(topic);
        let since_text = since.to_string();
        let max = bounds.max_len.to_string();
        let ttl = bounds.ttl.as_millis().to_string();
        let reply = self.eval(false, |c| {
            c.arg(1).arg(&stream).arg(&since_text).arg(&max).arg(&ttl);
        })?;
        parse_since(reply, bounds.max_len).ok_or_else(|| BusError("unexpected reply to the history script".into()))
    }

    fn ping(&mut self) -> Result<(), BusError> {
        redis::cmd("PING").query::<()>(&mut self.con).map_err(err)
    }
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

/// `{1, entries}` → complete; `{0}` → too old. `None`: not a reply of the script.
fn parse_since(reply: Value, max: usize) -> Option<Option<Vec<HistoryEntry>>> {
    let Value::Array(items) = reply else { return None };
    let mut items = items.into_iter();
    match int_of(&items.next()?)? {
        0 => return Some(None),
        1 => {}
        _ => return None,
    }
    let Value::Array(entries) = items.next()? else {
        return None;
    };
    if entries.len() > max {
        return None;
    }
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(pair) = entry else { return None };
        let mut pair = pair.into_iter();
        let id_bytes = pair.next()?;
        let id: HistoryId = std::str::from_utf8(bytes_of(&id_bytes)?).ok()?.parse().ok()?;
        let Value::Array(fields) = pair.next()? else {
            return None;
        };
        let (mut binary, mut prefix, mut suffix) = (None, None, None);
        let mut fields = fields.iter();
        while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
            match bytes_of(k)? {
                b"b" => binary = Some(bytes_of(v)? == b"1"),
                b"p" => prefix = Some(bytes_of(v)?),
                b"s" => suffix = Some(bytes_of(v)?),
                _ => {}
            }
        }
        let (binary, prefix, suffix) = (binary?, prefix?, suffix?);
        let id_text = id.to_string();
        let mut bytes = Vec::with_capacity(prefix.len() + id_text.len() + suffix.len());
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(id_text.as_bytes());
        bytes.extend_from_slice(suffix);
        if !binary && std::str::from_utf8(&bytes).is_err() {
            return None;
        }
        out.push(HistoryEntry { id, binary, bytes });
    }
    if out.windows(2).any(|w| matches!(w, [a, b] if a.id >= b.id)) {
        return None;
    }
    Some(Some(out))
}

impl MessageBus for RedisBus {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn publisher(&self) -> Result<Box<dyn BusPublisher>, BusError> {
        let mut con = self.connect()?;
        let record_sha = load(&mut con, RECORD)?;
        let since_sha = load(&mut con, SINCE)?;
        Ok(Box::new(Publisher {
            bus: self.clone(),
            con,
            record_sha,
            since_sha,
        }))
    }

    fn subscribe(&self, channels: &[Channel], sink: &mut dyn SubscriberSink) -> Result<(), BusError> {
        let mut con = self.connect()?;
        let mut pubsub = con.as_pubsub();
        for c in channels {
            pubsub.subscribe(self.channel(*c)).map_err(err)?;
        }
        // Parsing resumes where a timed-out read stopped (the parser keeps partial state), so
        // the tick costs nothing but a wake-up.
        pubsub.set_read_timeout(Some(SUBSCRIBER_TICK)).map_err(err)?;
        sink.subscribed();
        loop {
            if !sink.keep_going() {
                return Ok(());
            }
            match pubsub.get_message() {
                Ok(msg) => sink.message(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => continue,
                Err(e) => return Err(err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, p: &str, s: &str) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(vec![bulk("b"), bulk("0"), bulk("p"), bulk(p), bulk("s"), bulk(s)]),
        ])
    }

    #[test]
    fn history_replies_are_parsed_and_bad_ones_refused() {
        let ok = Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![entry("5-1", "a", "b"), entry("6-0", "", "")]),
        ]);
        let got = parse_since(ok, 10).unwrap().unwrap();
        assert_eq!(got[0].bytes, b"a5-1b");
        assert_eq!(got[1].id, HistoryId::new(6, 0));
        assert_eq!(parse_since(Value::Array(vec![Value::Int(0)]), 10), Some(None));
        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(2)]),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Int(1), Value::Array(vec![entry("x", "a", "b")])]),
            Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Array(vec![bulk("5-1")])])]),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![entry("6-0", "", ""), entry("5-1", "", "")]),
            ]),
        ] {
            assert_eq!(parse_since(bad.clone(), 10), None, "{bad:?}");
        }
        assert_eq!(
            parse_since(
                Value::Array(vec![Value::Int(1), Value::Array(vec![entry("5-1", "a", "b")])]),
                0
            ),
            None,
            "more than asked for"
        );
    }
}
