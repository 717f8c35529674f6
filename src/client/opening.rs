//! The opening handshake as bytes in, verdict out (RFC 6455 §4.1), so the blocking client and
//! the `client_session` fuzz target run the same code.
//!
//! The response head is bounded ([`MAX_RESPONSE_HEAD`]) and not re-parsed on every read: the
//! status line is checked as soon as it is complete (a server that is not speaking HTTP is
//! refused at once), the whole head only once a blank line has arrived. The verdict therefore
//! does not depend on how the bytes were split into reads.

use super::refusal::{Collecting, Refusal};
use super::url::WsUrl;
use crate::deflate::DeflateParams;
use crate::handshake::client::{ClientHandshake, ClientHandshakeError, ResponseStatus};

/// The largest response head accepted, in bytes (the core's own limit too).
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// What a finished handshake agreed (RFC 6455 §4.1: "_The WebSocket Connection is
/// Established_").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The subprotocol the server chose, if any ("_Subprotocol In Use_").
    pub protocol: Option<String>,
    /// The permessage-deflate parameters, if the server accepted our offer (RFC 7692 §7).
    pub deflate: Option<DeflateParams>,
    /// Length of the response head; the bytes after it are the server's first frames.
    pub head_len: usize,
}

/// Where the handshake is after some response bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpeningStatus {
    /// The response head is not complete yet.
    Partial,
    /// The server accepted; the connection is open.
    Open(Opened),
    /// The server answered with another status than 101 and its response is complete: the
    /// upgrade was refused (RFC 6455 §4.1), and this is what the server said.
    Refused(Refusal),
}

/// The client's opening handshake in progress: the request to send, and the response as it
/// arrives.
#[derive(Debug, Clone)]
pub struct Opening {
    handshake: ClientHandshake,
    request: Vec<u8>,
    response: Vec<u8>,
    status_line_ok: bool,
    /// Set once the head said the upgrade is refused: its body is being read.
    refusing: Option<Box<Collecting>>,
}

impl Opening {
    /// A handshake for `url` with the given key (and offers) and extra headers, already checked
    /// (RFC 6455 §4.1 items 1–10).
    pub fn new(handshake: ClientHandshake, url: &WsUrl, headers: &[(&str, &str)]) -> Opening {
        let request = handshake.request(&url.host_header(), url.resource_name(), headers);
        Opening {
            handshake,
            request,
            response: Vec::new(),
            status_line_ok: false,
            refusing: None,
        }
    }

    /// The request bytes to send.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The response bytes received so far (head and any frames after it).
    pub fn response(&self) -> &[u8] {
        &self.response
    }

    /// Takes the response buffer: after [`OpeningStatus::Open`], the head is `..head_len` and
    /// the server's first frames follow.
    pub fn into_response(self) -> Vec<u8> {
        self.response
    }

    /// Adds bytes received from the server and checks the response as far as it goes
    /// (RFC 6455 §4.1, "The client MUST validate the server's response as follows").
    ///
    /// A status other than 101 is not an error of the server's: the response is read on to
    /// the end of its body (bounded, RFC 9112 §6.3) and returned as [`OpeningStatus::Refused`].
    /// A body that ends only when the server closes needs [`end`](Self::end).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<OpeningStatus, ClientHandshakeError> {
        if let Some(c) = &mut self.refusing {
            return Ok(if c.push(bytes) {
                OpeningStatus::Refused(c.refusal())
            } else {
                OpeningStatus::Partial
            });
        }
        let from = self.response.len().saturating_sub(3);
        self.response.extend_from_slice(bytes);
        let too_large = Err(ClientHandshakeError::Malformed("response head over 16 KiB"));
        if !self.status_line_ok {
            match self.response.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    check_status_line(self.response.get(..end).unwrap_or_default())?;
                    self.status_line_ok = true;
                }
                None if self.response.len() > MAX_RESPONSE_HEAD => return too_large,
                None => return Ok(OpeningStatus::Partial),
            }
        }
        if !has_blank_line(self.response.get(from..).unwrap_or_default()) {
            return if self.response.len() > MAX_RESPONSE_HEAD {
                too_large
            } else {
                Ok(OpeningStatus::Partial)
            };
        }
        let verdict = match self.handshake.parse_response(&self.response) {
            Err(ClientHandshakeError::NotSwitchingProtocols(status)) => {
                return self
                    .start_refusal()
                    .ok_or(ClientHandshakeError::NotSwitchingProtocols(status))
            }
            other => other?,
        };
        match verdict {
            ResponseStatus::Accepted { head_len, .. } if head_len > MAX_RESPONSE_HEAD => too_large,
            ResponseStatus::Accepted {
                protocol,
                head_len,
                deflate,
            } => Ok(OpeningStatus::Open(Opened {
                protocol,
                deflate,
                head_len,
            })),
            // A blank line that does not end the head cannot happen in HTTP/1.1; wait for more.
            ResponseStatus::Partial if self.response.len() > MAX_RESPONSE_HEAD => too_large,
            ResponseStatus::Partial => Ok(OpeningStatus::Partial),
        }
    }

    /// The server closed the connection, or the caller stopped waiting: if the response was a
    /// refusal whose body was still coming, the refusal as far as it got (complete only when
    /// the body was meant to end at the close, RFC 9112 §6.3 rule 8).
    pub fn end(&mut self) -> Option<Refusal> {
        self.refusing.as_mut().map(|c| c.end())
    }

    /// The head is complete and its status is not 101: collect the body that follows it.
    /// `None` if the head cannot be read as a refusal after all (the status check's parser
    /// allows the same headers, so this is not expected): the plain error then.
    fn start_refusal(&mut self) -> Option<OpeningStatus> {
        let (mut c, head_len) = Collecting::from_head(&self.response)?;
        let done = c.push(self.response.get(head_len..).unwrap_or_default());
        self.response.truncate(head_len);
        let status = if done {
            OpeningStatus::Refused(c.refusal())
        } else {
            OpeningStatus::Partial
        };
        self.refusing = Some(Box::new(c));
        Some(status)
    }
}

/// `HTTP/1.x NNN ...`: anything else is not an HTTP/1.1 response (RFC 9112 §4).
fn check_status_line(line: &[u8]) -> Result<(), ClientHandshakeError> {
    let ok = match line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor, b' ', a, b, c, rest @ ..] => {
            minor.is_ascii_digit()
                && [a, b, c].iter().all(|d| d.is_ascii_digit())
                && matches!(rest.first(), None | Some(b' ' | b'\r'))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ClientHandshakeError::Malformed("not an HTTP/1.1 status line"))
    }
}

/// Whether `bytes` holds the empty line that ends a head: `\n\n` or `\n\r\n`.
fn has_blank_line(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::write_accept_response;

    fn opening() -> Opening {
        let url = WsUrl::parse("ws://example.com:8080/chat?x=1").unwrap();
        Opening::new(ClientHandshake::with_nonce(*b"the sample nonce", &[]), &url, &[])
    }

    #[test]
    fn request_line_and_host() {
        let req = String::from_utf8(opening().request().to_vec()).unwrap();
        assert!(
            req.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"),
            "{req}"
        );
    }

    #[test]
    fn same_verdict_at_every_split() {
        let mut ok = Vec::new();
        write_accept_response(&mut ok, b"dGhlIHNhbXBsZSBub25jZQ==", None, &[]);
        let head = ok.len();
        ok.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
        let mut bad_status = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
        bad_status.extend_from_slice(&[0x81, 0x00]);
        let cases: [(&[u8], Result<OpeningStatus, ClientHandshakeError>); 4] = [
            (
                &ok,
                Ok(OpeningStatus::Open(Opened {
                    protocol: None,
                    deflate: None,
                    head_len: head,
                })),
            ),
            (
                &bad_status,
                Ok(OpeningStatus::Refused(Refusal {
                    status: 404,
                    reason: "Not Found".into(),
                    headers: vec![("Content-Length".into(), "0".into())],
                    body: Vec::new(),
                    complete: true,
                })),
            ),
            (
                b"SSH-2.0-OpenSSH_9.2\r\n",
                Err(ClientHandshakeError::Malformed("not an HTTP/1.1 status line")),
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n",
                Ok(OpeningStatus::Partial),
            ),
        ];
        for (input, expected) in cases {
            for cut in 0..=input.len() {
                let mut o = opening();
                let first = o.feed(&input[..cut]);
                let verdict = match first {
                    Ok(OpeningStatus::Partial) => o.feed(&input[cut..]),
                    done => done,
                };
                assert_eq!(verdict, expected, "cut at {cut}");
            }
        }
    }

    #[test]
    fn response_head_is_bounded() {
        let mut o = opening();
        assert_eq!(o.feed(b"HTTP/1.1 101 OK\r\n"), Ok(OpeningStatus::Partial));
        let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
        let mut verdict = Ok(OpeningStatus::Partial);
        for _ in 0..20 {
            verdict = o.feed(filler.as_bytes());
            if verdict.is_err() {
                break;
            }
        }
        assert_eq!(
            verdict,
            Err(ClientHandshakeError::Malformed("response head over 16 KiB"))
        );
        assert!(o.response().len() <= MAX_RESPONSE_HEAD + filler.len());
        // No newline at all: refused at the limit too.
        let mut o = opening();
        assert!(o.feed(&vec![b'H'; MAX_RESPONSE_HEAD + 1]).is_err());
    }

    #[test]
    fn blank_line_forms() {
        assert!(has_blank_line(b"a\r\n\r\n"));
        assert!(has_blank_line(b"a\n\n"));
        assert!(has_blank_line(b"\n\r\n"));
        assert!(!has_blank_line(b"a\r\nb\r\n"));
        assert!(!has_blank_line(b"\n\r"));
    }
}
