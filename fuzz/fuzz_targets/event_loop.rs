//! The server's per-connection session (src/server/session/) driven as the event loop drives
//! it, without sockets: the peer's bytes arrive in reads of any size, the socket takes some,
//! all or none of what is queued (a reader that stalls), timers fire at random, the peer closes.
//!
//! Checks (see `wsloop::server::fuzzing`): no panic escapes (the fuzzed application panics on
//! purpose, and the server must contain it); what the session holds stays within a bound from
//! its limits; every byte the socket took is counted in `bytes_out`, and the client side parses
//! it as HTTP responses then valid server frames; over the high-water mark reading stops, and
//! it resumes once drained to half; the memory budget is back to zero when the session is gone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Once;

static QUIET_DELIBERATE_PANICS: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_DELIBERATE_PANICS.call_once(|| {
        // libfuzzer-sys's hook aborts on every panic, even one the server catches. Keep it for
        // real bugs; let the application's deliberate panics reach the server's catch_unwind.
        let abort_on_panic = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let deliberate = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.starts_with("fuzzed panic"));
            if !deliberate {
                abort_on_panic(info);
            }
        }));
    });
    wsloop::server::fuzzing::run(data);
});
