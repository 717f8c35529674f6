//! A refused upgrade: the server answered the opening handshake with a status other than 101
//! (RFC 6455 §4.1, "If the status code received from the server is not 101, the client handles
//! the response per HTTP procedures"). The connection never becomes a WebSocket, but what the
//! server said is worth keeping: a 401's `WWW-Authenticate`, a 429's `Retry-After`, a 503's
//! body naming the reason. So the response is read to its end (bounded), as HTTP frames it
//! (RFC 9112 §6.3), and handed to the caller whole.
//!
//! Sans-IO like [`Opening`](super::Opening): bytes in, a [`Refusal`] out once the body is
//! complete; the caller says when the server closed or the time ran out
//! ([`Opening::end`](super::Opening::end)).

use std::borrow::Cow;

/// The most body bytes kept from a refusal: enough for any error page meant for people, small
/// enough that a hostile server cannot make the client hold much.
pub const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// How many header lines of a refusal are parsed (more makes the head malformed).
const MAX_HEADERS: usize = 64;

/// The server's answer to an upgrade it did not accept: status, headers and body as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status code (401, 403, 429, 503, ...).
    pub status: u16,
    /// The reason phrase as sent (may be empty; RFC 9112 §4 makes it optional).
    pub reason: String,
    /// Each header as sent, in order; values not valid UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The body with HTTP's framing removed (chunks joined), at most [`MAX_REFUSAL_BODY`] bytes.
    pub body: Vec<u8>,
    /// Whether `body` is the whole body: false when it was cut at [`MAX_REFUSAL_BODY`], or the
    /// server closed or stopped sending before the length it announced.
    pub complete: bool,
}

impl Refusal {
    /// The first header named `name` (compared without regard to case, RFC 9110 §5.1).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced), for messages and logs.
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// How the refusal's body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body: 1xx, 204 and 304 (rule 1), or `Content-Length: 0`.
    Empty,
    /// `Content-Length: n` (rule 6): `n` more bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked` (rule 4, RFC 9112 §7.1).
    Chunked,
    /// Neither (rule 8): the body ends when the server closes.
    UntilClose,
}

/// A refusal whose head has arrived, its body still coming.
#[derive(Debug, Clone)]
pub(super) struct Collecting {
    refusal: Refusal,
    framing: Framing,
    /// Chunked: received bytes not yet decoded (a chunk-size line or chunk cut by a read).
    pending: Vec<u8>,
    /// Chunked: data bytes left in the current chunk, then its CRLF (`Some(0)` = only the CRLF).
    in_chunk: Option<usize>,
    done: bool,
}

impl Collecting {
    /// Reads the head at the start of `response` (complete: the caller saw its blank line) and
    /// returns the collector and the head's length, or `None` if the head is not valid HTTP.
    pub(super) fn from_head(response: &[u8]) -> Option<(Collecting, usize)> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(response) {
            Ok(httparse::Status::Complete(n)) => n,
            _ => return None,
        };
        let status = resp.code?;
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
            .collect();
        let refusal = Refusal {
            status,
            reason: resp.reason.unwrap_or_default().to_string(),
            headers,
            body: Vec::new(),
            complete: false,
        };
        let chunked = refusal.header("transfer-encoding").is_some_and(|v| {
            v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        });
        let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else {
            match refusal.header("content-length").map(|v| v.parse::<usize>()) {
                Some(Ok(0)) => Framing::Empty,
                Some(Ok(n)) => Framing::Length(n),
                // A length that is not a number: the body's end is unknown (RFC 9112 §6.3
                // rule 5 makes it an error); read what comes until the close.
                Some(Err(_)) | None => Framing::UntilClose,
            }
        };
        let mut c = Collecting {
            refusal,
            framing,
            pending: Vec::new(),
            in_chunk: None,
            done: false,
        };
        if framing == Framing::Empty {
            c.finish(true);
        }
        Some((c, head_len))
    }

    /// Adds body bytes; true once the body is complete (or the bound was reached).
    pub(super) fn push(&mut self, bytes: &[u8]) -> bool {
        if self.done {
            return true;
        }
        match self.framing {
            Framing::Empty => {}
            Framing::Length(n) => {
                let want = n.saturating_sub(self.refusal.body.len());
                let take = bytes.get(..want.min(bytes.len())).unwrap_or_default();
                self.keep(take);
                if self.refusal.body.len() >= n {
                    self.finish(true);
                }
            }
            Framing::UntilClose => self.keep(bytes),
            Framing::Chunked => {
                self.pending.extend_from_slice(bytes);
                self.decode_chunks();
            }
        }
        self.done
    }

    /// The server closed the connection, or the caller stopped waiting: the refusal as far as
    /// it got. Only a body delimited by the close is complete then.
    pub(super) fn end(&mut self) -> Refusal {
        if !self.done {
            let complete = self.framing == Framing::UntilClose;
            self.finish(complete);
        }
        self.refusal.clone()
    }

    /// The refusal, once [`push`](Self::push) returned true.
    pub(super) fn refusal(&self) -> Refusal {
        self.refusal.clone()
    }

    /// Appends body bytes up to the bound; at the bound the body is cut and collection ends.
    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_REFUSAL_BODY.saturating_sub(self.refusal.body.len());
        if bytes.len() > room {
            self.refusal
                .body
                .extend_from_slice(bytes.get(..room).unwrap_or_default());
            self.finish(false);
        } else {
            self.refusal.body.extend_from_slice(bytes);
        }
    }

    fn finish(&mut self, complete: bool) {
        self.refusal.complete = complete;
        self.done = true;
        self.pending = Vec::new();
    }

    /// Decodes as much of `pending` as has arrived (RFC 9112 §7.1): `size[;ext] CRLF data CRLF`
    /// repeated, ending with a chunk of size 0 (trailers after it are not needed).
    fn decode_chunks(&mut self) {
        let mut at = 0;
        while !self.done {
            let rest = self.pending.get(at..).unwrap_or_default();
            match self.in_chunk {
                Some(0) => {
                    // The CRLF after a chunk's data.
                    if rest.len() < 2 {
                        break;
                    }
                    if rest.get(..2) != Some(b"\r\n") {
                        self.finish(false);
                        break;
                    }
                    at += 2;
                    self.in_chunk = None;
                }
                Some(left) => {
                    let take = left.min(rest.len());
                    if take == 0 {
                        break;
                    }
                    let data = rest.get(..take).unwrap_or_default().to_vec();
                    at += take;
                    self.in_chunk = Some(left - take);
                    self.keep(&data);
                }
                None => {
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        // A size line longer than any sane one: not chunked framing.
                        if rest.len() > 1024 {
                            self.finish(false);
                        }
                        break;
                    };
                    let line = rest.get(..eol).unwrap_or_default();
                    let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(size_part)
                        .ok()
                        .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                    at += eol + 2;
                    match size {
                        Some(0) => self.finish(true),
                        Some(n) => self.in_chunk = Some(n),
                        None => self.finish(false),
                    }
                }
            }
        }
        if !self.done {
            self.pending.drain(..at.min(self.pending.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(response: &[u8]) -> (Option<Refusal>, Collecting) {
        let (mut c, head_len) = Collecting::from_head(response).unwrap();
        let done = c.push(&response[head_len..]);
        (done.then(|| c.refusal()), c)
    }

    #[test]
    fn content_length_body_is_kept_whole_at_every_split() {
        let response =
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 12\r\n\r\nno token, no";
        let head_len = response.len() - 12;
        for cut in head_len..=response.len() {
            let (mut c, n) = Collecting::from_head(response).unwrap();
            assert_eq!(n, head_len);
            let first = c.push(&response[n..cut]);
            assert_eq!(first, cut == response.len(), "cut at {cut}");
            assert!(c.push(&response[cut..]));
            let r = c.refusal();
            assert_eq!((r.status, r.reason.as_str()), (401, "Unauthorized"));
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert_eq!(r.body, b"no token, no");
            assert!(r.complete);
        }
    }

    #[test]
    fn bytes_after_the_announced_length_are_not_body() {
        let (r, _) = collect(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nnoEXTRA");
        assert_eq!(r.unwrap().body, b"no");
    }

    #[test]
    fn chunked_body_is_joined_at_every_split() {
        let response =
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nslow \r\n4\r\ndown\r\n0\r\n\r\n";
        let (_, head_len) = Collecting::from_head(response).unwrap();
        for cut in head_len..=response.len() {
            let (mut c, _) = Collecting::from_head(response).unwrap();
            c.push(&response[head_len..cut]);
            assert!(c.push(&response[cut..]), "cut at {cut}");
            let r = c.refusal();
            assert_eq!(r.body, b"slow down", "cut at {cut}");
            assert!(r.complete);
            assert_eq!(r.header("Retry-After"), Some("3"));
        }
    }

    #[test]
    fn broken_chunk_framing_ends_collection_incomplete() {
        let (r, _) = collect(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        let r = r.unwrap();
        assert!(!r.complete);
        assert!(r.body.is_empty());
    }

    #[test]
    fn no_length_reads_until_close() {
        let (done, mut c) = collect(b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy");
        assert!(done.is_none(), "no length: only the close ends it");
        let r = c.end();
        assert_eq!(r.body, b"busy");
        assert!(r.complete);
    }

    #[test]
    fn closing_early_leaves_it_incomplete() {
        let (done, mut c) = collect(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 100\r\n\r\nshort");
        assert!(done.is_none());
        let r = c.end();
        assert_eq!(r.body, b"short");
        assert!(!r.complete);
    }

    #[test]
    fn statuses_without_a_body() {
        for head in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        ] {
            let (r, _) = collect(head);
            let r = r.unwrap();
            assert!(r.body.is_empty() && r.complete);
        }
    }

    #[test]
    fn the_body_is_bounded() {
        let big = MAX_REFUSAL_BODY * 2;
        let head = format!("HTTP/1.1 413 Content Too Large\r\nContent-Length: {big}\r\n\r\n");
        let (mut c, _) = Collecting::from_head(head.as_bytes()).unwrap();
        let chunk = vec![b'x'; 4096];
        let mut pushes = 0;
        while !c.push(&chunk) {
            pushes += 1;
            assert!(
                pushes <= MAX_REFUSAL_BODY / 4096 + 1,
                "collection must stop at the bound"
            );
        }
        let r = c.refusal();
        assert_eq!(r.body.len(), MAX_REFUSAL_BODY);
        assert!(!r.complete);
        // Until the close, the same bound.
        let (mut c, _) = Collecting::from_head(b"HTTP/1.1 500 Oops\r\n\r\n").unwrap();
        let mut pushes = 0;
        while !c.push(&chunk) {
            pushes += 1;
            assert!(pushes <= MAX_REFUSAL_BODY / 4096 + 1);
        }
        assert_eq!(c.refusal().body.len(), MAX_REFUSAL_BODY);
        // Chunked: a chunk announcing more than the bound.
        let (mut c, _) = Collecting::from_head(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        c.push(format!("{:x}\r\n", big).as_bytes());
        let mut pushes = 0;
        while !c.push(&chunk) {
            pushes += 1;
            assert!(pushes <= MAX_REFUSAL_BODY / 4096 + 1);
        }
        assert_eq!(c.refusal().body.len(), MAX_REFUSAL_BODY);
    }
}
