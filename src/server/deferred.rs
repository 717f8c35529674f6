//! Decisions that wait on I/O: an upgrade ([`RequestContext::defer_upgrade`]) or an HTTP
//! response ([`RequestContext::defer_response`]) decided later, from any thread.
//!
//! A callback that defers gets a token and returns at once; the loop stops reading the
//! connection (bytes that follow the request stay in order in its stash) and goes on with
//! everyone else. Whoever holds the token — a worker that asked a database, say — completes
//! it once; the decision travels to the connection's loop as an inbox command and is applied
//! there exactly as if the callback had returned it. Nobody deciding within
//! `--handshake-timeout` gets the client a `503` (RFC 9110 §15.6.4); a client that leaves
//! while its decision is pending is dropped, and completing its token then says
//! [`DecideError::Gone`].
//!
//! A client that only half-closes — shuts down its write side, with its request or after it —
//! has left too. The server reads a 0 either way and cannot tell a half-close from a client
//! that is gone (RFC 9112 §9.6 leaves a half-close to the implementation); a half-closed
//! client could never speak WebSocket after a `101`, and the lookup behind a pending
//! response would be work for a reader that most likely left. (A request answered at once
//! is still answered after a half-close: its response is already queued when the 0 is read.)
//!
//! Who decides is settled by one atomic per decision, shared by the token and the connection:
//! the token claims it (pending → decided) before sending the decision, the loop claims it
//! (pending → ended) when it gives up (timeout, client gone, shutdown). Whichever comes first
//! wins, so a decision is never applied twice and a completion that returned `Ok` is not
//! answered `503` underneath it.

use super::context::RequestContext;
use super::handler::{Accept, Response};
use super::runtime::inbox::Command;
use super::shared::Core;
use super::ConnId;
use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const PENDING: u8 = 0;
const DECIDED: u8 = 1;
const ENDED: u8 = 2;

/// Bytes charged to the memory budget for each pending decision, on top of the request the
/// connection keeps (its token, its slot, the request head): small and fixed, so a flood of
/// pending upgrades is bounded by `--max-connections` and the budget alike.
pub(crate) const PENDING_CHARGE: usize = 1024;

/// Why completing a pending decision did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecideError {
    /// The connection is no longer waiting: the client left, or nobody decided within the
    /// handshake timeout and it was answered `503`.
    Gone,
    /// Another token for the same decision completed it first (a callback that deferred
    /// twice gets two tokens for one decision).
    AlreadyDecided,
    /// The server has shut down (or is shutting down): pending decisions were answered `503`.
    ServerStopped,
    /// The token cannot decide anything: it was made where no such decision waits
    /// (`defer_upgrade` in `on_request`, `defer_response` in `on_upgrade`) or for a state
    /// type other than [`Handler::State`](super::Handler::State). The request was answered
    /// `500` and the mistake logged.
    Invalid,
}

impl fmt::Display for DecideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecideError::Gone => "the connection is no longer waiting for this decision",
            DecideError::AlreadyDecided => "this decision was already made",
            DecideError::ServerStopped => "the server has stopped",
            DecideError::Invalid => "this token was made where no decision can wait",
        })
    }
}

impl std::error::Error for DecideError {}

/// The one atomic a decision is settled by (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct DecisionSlot(AtomicU8);

impl DecisionSlot {
    /// The token's side: claims the decision.
    fn claim(&self) -> Result<(), DecideError> {
        match self
            .0
            .compare_exchange(PENDING, DECIDED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(DECIDED) => Err(DecideError::AlreadyDecided),
            Err(_) => Err(DecideError::Gone),
        }
    }

    /// The loop's side: gives up waiting. True when nobody had decided (the loop answers);
    /// false when a decision is on its way through the inbox.
    pub(crate) fn end(&self) -> bool {
        self.0
            .compare_exchange(PENDING, ENDED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A decision on its way to the connection's loop.
pub(crate) enum Decision {
    /// An upgrade: the handler's `Accept<Handler::State>`, boxed to cross threads (the loop
    /// downcasts it back), or its refusal.
    Upgrade(Result<Box<dyn Any + Send>, Response>),
    /// An HTTP response.
    Respond(Response),
}

/// What the callback being run may defer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Deferrable {
    #[default]
    Nothing,
    /// An upgrade whose state has this type (`Handler::State`).
    Upgrade(TypeId),
    Response,
}

/// What the callback deferred.
#[derive(Debug, Default)]
pub(crate) struct Deferral {
    pub(crate) slot: Option<Arc<DecisionSlot>>,
    /// A misuse, to answer 500 and log.
    pub(crate) invalid: Option<&'static str>,
}

/// What a callback's deferral came to, for the HTTP phase.
pub(crate) enum Deferred {
    No,
    Pending(Arc<DecisionSlot>),
    Invalid(&'static str),
}

impl Deferral {
    pub(crate) fn outcome(self) -> Deferred {
        match (self.slot, self.invalid) {
            (slot, Some(why)) => {
                // Tokens already handed out say Gone: the request is answered 500 now.
                if let Some(s) = slot {
                    s.end();
                }
                Deferred::Invalid(why)
            }
            (Some(slot), None) => Deferred::Pending(slot),
            (None, None) => Deferred::No,
        }
    }
}

/// The sending half shared by both tokens. A token dropped without a decision (a worker
/// that panicked, an error path that forgot it) decides `500` rather than leave the client
/// waiting out the timeout.
struct Ticket {
    core: Arc<Core>,
    id: ConnId,
    slot: Option<Arc<DecisionSlot>>,
    upgrade: bool,
}

impl Ticket {
    fn new(rcx: &mut RequestContext<'_>, wanted: Deferrable) -> Ticket {
        let core = rcx.lp.core.clone();
        let upgrade = matches!(wanted, Deferrable::Upgrade(_));
        let slot = if wanted == rcx.deferrable {
            Some(rcx.deferral.slot.get_or_insert_with(Default::default).clone())
        } else {
            rcx.deferral.invalid = Some(match (rcx.deferrable, wanted) {
                (Deferrable::Upgrade(_), Deferrable::Upgrade(_)) => {
                    "defer_upgrade::<S>() with an S other than Handler::State"
                }
                (_, Deferrable::Upgrade(_)) => "defer_upgrade() outside on_upgrade",
                _ => "defer_response() outside on_request",
            });
            None
        };
        Ticket {
            core,
            id: rcx.id,
            slot,
            upgrade,
        }
    }

    fn complete(&mut self, decision: Decision) -> Result<(), DecideError> {
        let Some(slot) = self.slot.take() else {
            return Err(DecideError::Invalid);
        };
        if self.core.shutdown.load(Ordering::Acquire) || self.core.running.load(Ordering::Acquire) == 0 {
            return Err(DecideError::ServerStopped);
        }
        slot.claim()?;
        let Some(inbox) = self.core.inboxes.get(self.id.loop_index()) else {
            return Err(DecideError::Gone);
        };
        inbox.push([Command::Decide { id: self.id, decision }]);
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.slot.is_some() {
            log::warn!(
                "connection {}: a pending {} was dropped without a decision: answering 500",
                self.id,
                if self.upgrade { "upgrade" } else { "response" }
            );
            let fallback = Response::status(500);
            let decision = if self.upgrade {
                Decision::Upgrade(Err(fallback))
            } else {
                Decision::Respond(fallback)
            };
            let _ = self.complete(decision);
        }
    }
}

/// An upgrade decided later, from any thread: made by [`RequestContext::defer_upgrade`],
/// completed once with [`PendingUpgrade::accept`] or [`PendingUpgrade::refuse`]. Dropping it
/// undecided refuses the upgrade with `500`.
pub struct PendingUpgrade<S> {
    ticket: Ticket,
    _state: PhantomData<fn() -> S>,
}

impl<S> fmt::Debug for PendingUpgrade<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingUpgrade").field("id", &self.ticket.id).finish()
    }
}

impl<S: Send + 'static> PendingUpgrade<S> {
    /// The connection waiting for this decision.
    pub fn id(&self) -> ConnId {
        self.ticket.id
    }

    /// Accepts: the `101` goes out and `on_open` runs with `accept`'s state, exactly as if
    /// `on_upgrade` had returned it; frames the client sent behind its request are read
    /// after. `Ok` means the decision is on its way to the connection's loop (a client that
    /// leaves in that moment is lost, as any message in flight).
    pub fn accept(mut self, accept: Accept<S>) -> Result<(), DecideError> {
        self.ticket.complete(Decision::Upgrade(Ok(Box::new(accept))))
    }

    /// Refuses with this response (a `401`, say), then closes.
    pub fn refuse(mut self, response: Response) -> Result<(), DecideError> {
        self.ticket.complete(Decision::Upgrade(Err(response)))
    }
}

/// An HTTP response given later, from any thread: made by
/// [`RequestContext::defer_response`], completed once with [`PendingResponse::respond`].
/// Requests the client pipelined behind it wait and are answered after it, in order.
/// Dropping it unanswered answers `500`.
pub struct PendingResponse {
    ticket: Ticket,
}

impl fmt::Debug for PendingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingResponse").field("id", &self.ticket.id).finish()
    }
}

impl PendingResponse {
    /// The connection waiting for this response.
    pub fn id(&self) -> ConnId {
        self.ticket.id
    }

    /// Sends the response (as `on_request` returning it would: CORS headers, keep-alive).
    pub fn respond(mut self, response: Response) -> Result<(), DecideError> {
        self.ticket.complete(Decision::Respond(response))
    }
}

impl RequestContext<'_> {
    /// Decides this upgrade later: call it in [`Handler::on_upgrade`](super::Handler::on_upgrade),
    /// hand the token to another thread (a worker asking a database), and return; what
    /// `on_upgrade` returns is then not used. `S` is the handler's `State`.
    ///
    /// Until the token is completed the connection is not read, and costs a small fixed
    /// charge against the memory budget (`wsloop_pending_decisions` in `/metrics` counts
    /// them). Nobody deciding within `--handshake-timeout` answers `503`; a client that
    /// leaves — or half-closes, shutting down its write side (see the module docs) — is
    /// dropped and the completion returns [`DecideError::Gone`].
    ///
    /// Called anywhere else, or with another `S`, it returns a token whose completion
    /// returns [`DecideError::Invalid`], and the request is answered `500` (a bug, logged).
    ///
    /// ```
    /// use wsloop::handshake::Request;
    /// use wsloop::server::{Accept, Context, Handler, RequestContext, Response, Server};
    ///
    /// struct Auth;
    /// impl Handler for Auth {
    ///     type State = String; // the user
    ///     fn on_upgrade(&self, req: &Request, ctx: &mut RequestContext<'_>) -> Result<Accept<String>, Response> {
    ///         let token = req.query().unwrap_or_default().to_owned();
    ///         let pending = ctx.defer_upgrade::<String>();
    ///         std::thread::spawn(move || {
    ///             // The slow part: a database, an auth service.
    ///             let verdict = match token.strip_prefix("user=") {
    ///                 Some(user) => pending.accept(Accept::new(user.to_owned())),
    ///                 None => pending.refuse(Response::status(401)),
    ///             };
    ///             let _ = verdict; // Err: the client left, or the server stopped
    ///         });
    ///         Err(Response::status(503)) // not used: the decision is pending
    ///     }
    ///     fn on_open(&self, ctx: &mut Context<'_, String>) {
    ///         let hello = format!("hello {}", ctx.state());
    ///         ctx.send_text(&hello);
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = Server::new(Auth).configure(|c| c.bind = "127.0.0.1:0".parse().unwrap()).start()?;
    /// let url = format!("ws://{}/?user=ada", server.local_addr());
    /// let mut client = wsloop::client::Client::connect(&url)?;
    /// assert_eq!(client.recv()?, wsloop::client::ClientEvent::Text("hello ada".into()));
    /// client.close(wsloop::CloseCode::NORMAL, "")?;
    /// server.shutdown();
    /// server.join()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn defer_upgrade<S: Send + 'static>(&mut self) -> PendingUpgrade<S> {
        PendingUpgrade {
            ticket: Ticket::new(self, Deferrable::Upgrade(TypeId::of::<S>())),
            _state: PhantomData,
        }
    }

    /// Answers this request later: call it in [`Handler::on_request`](super::Handler::on_request),
    /// hand the token to another thread, and return; what `on_request` returns is then not
    /// used. Requests pipelined behind this one wait their turn. The same limits as
    /// [`RequestContext::defer_upgrade`]: not read meanwhile, `503` after
    /// `--handshake-timeout`, [`DecideError::Gone`] once the client left or half-closed.
    pub fn defer_response(&mut self) -> PendingResponse {
        PendingResponse {
            ticket: Ticket::new(self, Deferrable::Response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_to_claim_a_decision_wins() {
        let slot = DecisionSlot::default();
        assert_eq!(slot.claim(), Ok(()));
        assert_eq!(slot.claim(), Err(DecideError::AlreadyDecided));
        assert!(!slot.end(), "decided: the loop waits for the command");

        let slot = DecisionSlot::default();
        assert!(slot.end());
        assert_eq!(slot.claim(), Err(DecideError::Gone));
        assert!(!slot.end());
    }
}
