//! The runtime under the connections: the mio [`event_loop`] (one per thread) and the
//! [`inbox`] other threads reach it through, the sans-IO [`drive`] code it shares with the fuzz harness, the connection [`slab`], the
//! [`timers`], the outbound queues and their buffer pool ([`outbound`]), and the memory
//! [`budget`] every buffer is charged to.

pub(crate) mod budget;
pub(crate) mod drive;
pub(crate) mod event_loop;
pub(crate) mod inbox;
pub(crate) mod outbound;
pub(crate) mod slab;
pub(crate) mod timers;
