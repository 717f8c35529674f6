//! What crosses the message bus: one message = a header line and the payload, so a message is
//! framed once per process, on arrival (RFC 6455 §5.2 framing stays a local concern).
//!
//! ```text
//! wsl1 <kind> <origin node, hex> <1 text | 2 binary> <excluded ConnId | -> <target>\n<payload>
//! ```
//!
//! `kind` is `t` (target: a topic), `a` (every WebSocket; target `-`), `o` (one connection;
//! target: its `ConnId`), or `r`, a recorded topic message (target: `<history id> <topic>`).
//! A topic may hold any character but a line feed. The header is ASCII and short; everything is
//! checked on the way in (the bytes come from the network): a malformed message is dropped and
//! counted, never a panic.

use super::super::fanout::Target;
use super::super::history::HistoryId;
use crate::server::ConnId;

const MAGIC: &str = "wsl1";
/// Longest header accepted (the topic is most of it).
const MAX_HEADER: usize = 4096;

/// A message read off the bus.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inbound<'a> {
    pub(crate) origin: u32,
    pub(crate) binary: bool,
    pub(crate) exclude: Option<ConnId>,
    /// The connection that published it, when its origin says (recorded messages): the
    /// origin process holds that publisher while a receiver is backed up.
    pub(crate) from: Option<ConnId>,
    pub(crate) target: WireTarget<'a>,
    pub(crate) payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WireTarget<'a> {
    Topic(&'a str),
    All,
    One(ConnId),
    Recorded(HistoryId, &'a str),
}

fn op(binary: bool) -> char {
    if binary {
        '2'
    } else {
        '1'
    }
}

fn excl(exclude: Option<ConnId>) -> String {
    exclude.map_or_else(|| "-".to_owned(), |id| id.to_string())
}

/// Whether a topic can travel (no line feed, header not too long).
pub(crate) fn topic_ok(topic: &str) -> bool {
    !topic.contains('\n') && topic.len() < MAX_HEADER - 100
}

/// The bytes for a live (unrecorded) message; `None` for a topic that cannot travel.
pub(crate) fn encode(
    origin: u32,
    binary: bool,
    exclude: Option<ConnId>,
    target: &Target,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let (kind, t) = match target {
        Target::Topic(topic) if topic_ok(topic) => ('t', topic.to_string()),
        Target::All => ('a', "-".to_owned()),
        Target::One(id) => ('o', id.to_string()),
        Target::Topic(_) | Target::Recorded(..) => return None,
    };
    let head = format!("{MAGIC} {kind} {origin:08x} {} {} {t}\n", op(binary), excl(exclude));
    let mut v = Vec::with_capacity(head.len() + payload.len());
    v.extend_from_slice(head.as_bytes());
    v.extend_from_slice(payload);
    Some(v)
}

/// The header of a recorded message around its id: `head + id + tail` (the payload follows).
/// Its publisher, if a connection, follows the excluded field after a `/`
/// (`<excluded | ->/<publisher>`), so that the origin can hold it when the message comes back
/// from Redis and lands on a backed-up receiver.
pub(crate) fn recorded_head(
    origin: u32,
    binary: bool,
    exclude: Option<ConnId>,
    from: Option<ConnId>,
    topic: &str,
) -> (Vec<u8>, Vec<u8>) {
    let from = from.map_or_else(String::new, |id| format!("/{id}"));
    (
        format!("{MAGIC} r {origin:08x} {} {}{from} ", op(binary), excl(exclude)).into_bytes(),
        format!(" {topic}\n").into_bytes(),
    )
}

/// The header of the live (unrecorded) form of a recorded message, from its recorded
/// header's two halves (see [`recorded_head`]): kind `t`, target the topic.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn unrecorded_head(head: &[u8], tail: &[u8]) -> Vec<u8> {
    let rest = head.strip_prefix(format!("{MAGIC} r ").as_bytes()).unwrap_or(head);
    let mut v = format!("{MAGIC} t ").into_bytes();
    v.extend_from_slice(rest);
    v.extend_from_slice(tail.strip_prefix(b" ").unwrap_or(tail));
    v
}

/// Parses a message from the bus; `None` if it is not one of ours or is malformed.
pub(crate) fn decode(bytes: &[u8]) -> Option<Inbound<'_>> {
    let nl = bytes.iter().take(MAX_HEADER).position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(bytes.get(..nl)?).ok()?;
    let payload = bytes.get(nl + 1..)?;
    let mut parts = head.splitn(6, ' ');
    if parts.next()? != MAGIC {
        return None;
    }
    let kind = parts.next()?;
    let origin_text = parts.next()?;
    if origin_text.len() != 8 {
        return None;
    }
    let origin = u32::from_str_radix(origin_text, 16).ok()?;
    let binary = match parts.next()? {
        "1" => false,
        "2" => true,
        _ => return None,
    };
    let field = parts.next()?;
    let (exclude, from) = match field.split_once('/') {
        Some((exclude, from)) => (exclude, Some(from.parse().ok()?)),
        None => (field, None),
    };
    let exclude = match exclude {
        "-" => None,
        id => Some(id.parse().ok()?),
    };
    let rest = parts.next()?;
    let target = match kind {
        "t" => WireTarget::Topic(rest),
        "a" if rest == "-" => WireTarget::All,
        "o" => WireTarget::One(rest.parse().ok()?),
        "r" => {
            let (id, topic) = rest.split_once(' ')?;
            WireTarget::Recorded(id.parse().ok()?, topic)
        }
        _ => return None,
    };
    Some(Inbound {
        origin,
        binary,
        exclude,
        from,
        target,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let id = ConnId::new(0xab, 1, 2, 3);
        for (target, want) in [
            (Target::Topic("room:a b".into()), WireTarget::Topic("room:a b")),
            (Target::All, WireTarget::All),
            (Target::One(id), WireTarget::One(id)),
        ] {
            let bytes = encode(7, true, Some(id), &target, b"pay\nload").unwrap();
            let m = decode(&bytes).unwrap();
            assert_eq!(
                m,
                Inbound {
                    origin: 7,
                    binary: true,
                    exclude: Some(id),
                    from: None,
                    target: want,
                    payload: b"pay\nload"
                }
            );
        }
        let (head, tail) = recorded_head(9, false, None, None, "room:x");
        let mut bytes = head;
        bytes.extend_from_slice(b"5-1");
        bytes.extend_from_slice(&tail);
        bytes.extend_from_slice(b"{\"mid\":\"5-1\"}");
        let m = decode(&bytes).unwrap();
        assert_eq!(m.target, WireTarget::Recorded(HistoryId::new(5, 1), "room:x"));
        assert_eq!((m.origin, m.binary, m.exclude, m.from), (9, false, None, None));
        // The publisher travels with a recorded message, so its origin can hold it.
        let (publisher, other) = (ConnId::new(9, 1, 4, 7), ConnId::new(9, 0, 2, 3));
        for exclude in [None, Some(other)] {
            let (head, tail) = recorded_head(9, false, exclude, Some(publisher), "room:x");
            let mut bytes = head;
            bytes.extend_from_slice(b"5-2");
            bytes.extend_from_slice(&tail);
            let m = decode(&bytes).unwrap();
            assert_eq!((m.exclude, m.from), (exclude, Some(publisher)));
            assert_eq!(m.target, WireTarget::Recorded(HistoryId::new(5, 2), "room:x"));
        }
        assert!(encode(1, false, None, &Target::Topic("a\nb".into()), b"").is_none());
        // The live form of a recorded message (a topic past the limit on topics with
        // history) is the plain topic message the origin would have sent.
        let id = ConnId::new(9, 0, 1, 2);
        let (head, tail) = recorded_head(9, true, Some(id), None, "room:x");
        let mut live = unrecorded_head(&head, &tail);
        live.extend_from_slice(b"hi");
        assert_eq!(
            live,
            encode(9, true, Some(id), &Target::Topic("room:x".into()), b"hi").unwrap()
        );
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        for bad in [
            &b""[..],
            b"\n",
            b"wsl1",
            b"wsl1 t 00000001 1 - \n",
            b"wsl2 t 00000001 1 - t\n",
            b"wsl1 t 0001 1 - t\n",
            b"wsl1 t 00000001 3 - t\n",
            b"wsl1 t 00000001 1 x t\n",
            b"wsl1 o 00000001 1 - 1.2\n",
            b"wsl1 r 00000001 1 - 5-x t\n",
            b"wsl1 r 00000001 1 - 5-1\n",
            b"wsl1 a 00000001 1 - x\n",
            b"wsl1 q 00000001 1 - x\n",
            b"wsl1 t 0000000g 1 - t\n",
            b"\xff\xfe t\n",
        ] {
            let ok = decode(bad).is_some_and(|m| !matches!(m.target, WireTarget::Topic("")));
            assert!(!ok, "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode(&[b'x'; 10_000]).is_none());
    }
}
