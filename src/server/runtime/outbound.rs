//! A connection's outbound queue: bytes waiting for the socket to take them.
//!
//! Small frames are appended to an owned buffer, so many echoes from one read go out in one
//! write. A large broadcast frame is queued as a shared `Arc<[u8]>`, framed once and referenced
//! by every receiver's queue. Writes are vectored across queued chunks.

use super::budget::Frame;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

/// At most this many chunks go into one `writev`.
const MAX_IOVECS: usize = 64;
/// An owned chunk is not extended past this size; a new one is started instead, so a
/// partially written chunk is not moved around by reallocation too often.
const OWNED_CHUNK_TARGET: usize = 256 * 1024;
/// Small buffers (and emptied queues) kept in a loop's pool at most. Enough for a loop
/// fanning out to 10,000 subscribers per turn: below that, every turn freed and re-allocated
/// the buffers of the subscribers past the limit. The pool only ever holds what was in use at
/// the same time (a buffer comes back when its connection has written it), so a server whose
/// connections are idle keeps few.
const POOL_MAX_BUFFERS: usize = 16384;
/// A buffer up to this capacity is small: what a connection needs for one turn of echoes or
/// broadcasts.
const POOL_SMALL_CAPACITY: usize = 4096;
/// The pooled small buffers' capacity together at most.
const POOL_SMALL_BYTES: usize = 4 << 20;
/// Larger buffers (a burst queued for one connection) are pooled apart, so that a few of them
/// cannot use up the byte allowance the many small ones need: when they shared one, the
/// 64 KiB buffers left by a burst of join notices filled it, every small buffer given back
/// after that was freed, and each of 1,000 receivers of a broadcast allocated its buffer and
/// regrew it (34, 68, ... bytes) every turn (a third of the user-space instructions per
/// delivery).
const POOL_MAX_LARGE: usize = 64;
const POOL_LARGE_BYTES: usize = 2 << 20;
const POOL_MAX_CAPACITY: usize = 64 * 1024;

enum Chunk {
    Owned(Vec<u8>),
    Shared(Arc<Frame>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(f) => f.bytes(),
        }
    }
}

/// A loop-wide pool of emptied buffers, so a busy connection does not allocate per batch and
/// an idle one holds nothing.
#[derive(Default)]
pub(crate) struct BufferPool {
    /// Emptied buffers of at most [`POOL_SMALL_CAPACITY`], most recently given back last.
    free: Vec<Vec<u8>>,
    /// Capacity of the buffers in `free`.
    free_bytes: usize,
    /// Emptied larger buffers (up to [`POOL_MAX_CAPACITY`]).
    large: Vec<Vec<u8>>,
    /// Capacity of the buffers in `large`.
    large_bytes: usize,
    /// Emptied queues (with their chunk lists' capacity), handed to the next connection that
    /// has something to send: a queue lives only while it holds bytes. Boxed on purpose: the
    /// connection holds the same box, so handing it over moves a pointer, not the queue.
    #[allow(clippy::vec_box)]
    queues: Vec<Box<Queue>>,
}

impl BufferPool {
    fn take_queue(&mut self) -> Box<Queue> {
        self.queues.pop().unwrap_or_default()
    }

    fn give_queue(&mut self, mut q: Box<Queue>) {
        if self.queues.len() < POOL_MAX_BUFFERS {
            q.chunks.clear();
            q.offset = 0;
            q.len = 0;
            q.owned = 0;
            q.protected = 0;
            self.queues.push(q);
        }
    }

    /// An empty buffer: a small one if there is one (most appends are small), else a large
    /// one, else a new one.
    fn take(&mut self) -> Vec<u8> {
        if let Some(buf) = self.free.pop() {
            self.free_bytes -= buf.capacity().min(self.free_bytes);
            return buf;
        }
        match self.large.pop() {
            Some(buf) => {
                self.large_bytes -= buf.capacity().min(self.large_bytes);
                buf
            }
            None => Vec::new(),
        }
    }

    fn give(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 {
            return;
        }
        buf.clear();
        if cap <= POOL_SMALL_CAPACITY {
            if self.free.len() < POOL_MAX_BUFFERS && self.free_bytes + cap <= POOL_SMALL_BYTES {
                self.free_bytes += cap;
                self.free.push(buf);
            }
        } else if cap <= POOL_MAX_CAPACITY
            && self.large.len() < POOL_MAX_LARGE
            && self.large_bytes + cap <= POOL_LARGE_BYTES
        {
            self.large_bytes += cap;
            self.large.push(buf);
        }
    }
}

/// The bytes queued for one connection. Boxed and only allocated while something is queued:
/// an idle connection pays one pointer for it.
#[derive(Default)]
pub(crate) struct Outbound {
    queue: Option<Box<Queue>>,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Unwritten bytes in the whole queue.
    len: usize,
    /// Of those, the bytes in owned chunks (shared frames are charged to the memory budget
    /// once, by the frame itself).
    owned: usize,
    /// The first unwritten bytes that shedding must keep: the 101 that opens the WebSocket
    /// (without it the client could not read the 1013 that follows).
    protected: usize,
}

impl Outbound {
    /// Unwritten bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unwritten bytes this queue owns (not counting shared frames).
    pub(crate) fn owned_len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.owned)
    }

    fn queue(&mut self, pool: &mut BufferPool) -> &mut Queue {
        self.queue.get_or_insert_with(|| pool.take_queue())
    }

    /// Runs `f` with the owned buffer at the tail of the queue, to append bytes to it.
    pub(crate) fn append<R>(&mut self, pool: &mut BufferPool, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let q = self.queue(pool);
        let needs_new = match q.chunks.back() {
            Some(Chunk::Owned(v)) => v.len() >= OWNED_CHUNK_TARGET,
            _ => true,
        };
        if needs_new {
            q.chunks.push_back(Chunk::Owned(pool.take()));
        }
        match q.chunks.back_mut() {
            Some(Chunk::Owned(v)) => {
                let before = v.len();
                let r = f(v);
                q.len += v.len() - before;
                q.owned += v.len() - before;
                r
            }
            // Unreachable: an owned chunk was just ensured at the back.
            _ => f(&mut Vec::new()),
        }
    }

    /// Appends `bytes` (whole frames) to the owned buffer at the tail of the queue. The
    /// common case of a fan-out — the receiver's buffer of this turn exists and has room —
    /// is a length check and a copy; anything else goes through [`Outbound::append`].
    #[inline]
    pub(crate) fn push_bytes(&mut self, pool: &mut BufferPool, bytes: &[u8]) {
        if let Some(q) = self.queue.as_deref_mut() {
            if let Some(Chunk::Owned(v)) = q.chunks.back_mut() {
                if v.capacity() - v.len() >= bytes.len() && v.len() < OWNED_CHUNK_TARGET {
                    v.extend_from_slice(bytes);
                    q.len += bytes.len();
                    q.owned += bytes.len();
                    return;
                }
            }
        }
        self.push_bytes_slow(pool, bytes);
    }

    /// [`Outbound::push_bytes`] when a buffer must be taken or grown: kept out of line so the
    /// fast path stays a few instructions where it is inlined.
    #[inline(never)]
    fn push_bytes_slow(&mut self, pool: &mut BufferPool, bytes: &[u8]) {
        self.append(pool, |v| v.extend_from_slice(bytes));
    }

    /// Queues a shared, already-framed message.
    pub(crate) fn push_shared(&mut self, frame: Arc<Frame>, pool: &mut BufferPool) {
        let q = self.queue(pool);
        q.len += frame.len();
        q.chunks.push_back(Chunk::Shared(frame));
    }

    /// Writes as much as the socket takes. Returns the bytes written; `WouldBlock` is not an
    /// error here (it just stops the loop).
    pub(crate) fn write_to<W: Write>(&mut self, w: &mut W, pool: &mut BufferPool) -> io::Result<usize> {
        let Some(q) = self.queue.as_mut() else { return Ok(0) };
        let mut total = 0;
        while q.len > 0 {
            // One chunk (the common case: a turn's frames coalesced in one buffer) goes out
            // with write(), which std turns into send(2) on a socket; writev(2) costs the VFS
            // layer on every call (vfs_writev, fdget_pos), measurable when fanning out to
            // thousands. Without building the 64-slice array a vectored write needs: that
            // was a fifth of the user-space work of writing a receiver's turn of broadcasts.
            if q.chunks.len() == 1 {
                let bytes = q.chunks.front().map_or(&[][..], |c| c.bytes());
                let result = w.write(bytes.get(q.offset..).unwrap_or_default());
                let written = match result {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                total += written;
                if written >= q.len {
                    // All of it went (the usual end of a turn): nothing to walk.
                    if let Some(Chunk::Owned(v)) = q.chunks.pop_front() {
                        pool.give(v);
                    }
                    q.offset = 0;
                    q.len = 0;
                    q.owned = 0;
                    q.protected = 0;
                    break;
                }
                q.consume(written, pool);
                continue;
            }
            let mut slices: [IoSlice<'_>; MAX_IOVECS] = std::array::from_fn(|_| IoSlice::new(&[]));
            let mut count = 0;
            for (i, chunk) in q.chunks.iter().take(MAX_IOVECS).enumerate() {
                let bytes = chunk.bytes();
                let bytes = if i == 0 {
                    bytes.get(q.offset..).unwrap_or_default()
                } else {
                    bytes
                };
                if let Some(slot) = slices.get_mut(count) {
                    *slot = IoSlice::new(bytes);
                    count += 1;
                }
            }
            // (One slice here: a chunk with nothing left of it; see above.)
            let result = match slices.get(..count).unwrap_or_default() {
                [one] => w.write(one),
                many => w.write_vectored(many),
            };
            let written = match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += written;
            q.consume(written, pool);
        }
        self.release_if_empty(pool);
        Ok(total)
    }

    /// Hands the queue back to the pool when nothing is queued (idle connections hold nothing).
    pub(crate) fn release_if_empty(&mut self, pool: &mut BufferPool) {
        if self.is_empty() {
            if let Some(q) = self.queue.take() {
                pool.give_queue(q);
            }
        }
    }

    /// Marks everything queued so far as bytes [`Outbound::drop_unstarted`] keeps (the
    /// handshake response).
    pub(crate) fn protect_queued(&mut self) {
        if let Some(q) = self.queue.as_mut() {
            q.protected = q.len;
        }
    }

    /// Drops everything queued except the rest of a chunk already partly written and the
    /// protected bytes: what a connection being shed gives back. Every chunk holds whole
    /// frames (`append` and `push_shared` each add whole frames) and the protected bytes end
    /// where a frame starts, so what is queued next starts a frame.
    pub(crate) fn drop_unstarted(&mut self, pool: &mut BufferPool) {
        let Some(q) = self.queue.as_mut() else { return };
        // The chunks that hold what must stay; the last of them is cut after the protected
        // bytes if it is owned (a shared frame is never protected: it is kept or dropped whole).
        let mut keep_chunks = 0;
        let mut covered = 0;
        for (i, chunk) in q.chunks.iter_mut().enumerate() {
            let start = if i == 0 { q.offset } else { 0 };
            let partly_written = i == 0 && q.offset > 0;
            if covered >= q.protected && !partly_written {
                break;
            }
            keep_chunks = i + 1;
            let avail = chunk.bytes().len() - start;
            if covered + avail > q.protected && !partly_written {
                if let Chunk::Owned(v) = chunk {
                    v.truncate(start + (q.protected - covered));
                }
            }
            covered += chunk.bytes().len() - start;
        }
        while q.chunks.len() > keep_chunks {
            if let Some(Chunk::Owned(v)) = q.chunks.pop_back() {
                pool.give(v);
            }
        }
        let (mut len, mut owned) = (0, 0);
        for (i, chunk) in q.chunks.iter().enumerate() {
            let n = chunk.bytes().len() - if i == 0 { q.offset } else { 0 };
            len += n;
            if matches!(chunk, Chunk::Owned(_)) {
                owned += n;
            }
        }
        q.len = len;
        q.owned = owned;
        self.release_if_empty(pool);
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self, pool: &mut BufferPool) {
        if let Some(mut q) = self.queue.take() {
            for chunk in q.chunks.drain(..) {
                if let Chunk::Owned(v) = chunk {
                    pool.give(v);
                }
            }
            pool.give_queue(q);
        }
    }
}

impl Queue {
    fn consume(&mut self, mut n: usize, pool: &mut BufferPool) {
        self.len -= n.min(self.len);
        self.protected = self.protected.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.chunks.front() else { break };
            let owned = matches!(front, Chunk::Owned(_));
            let left = front.bytes().len() - self.offset;
            if n < left {
                self.offset += n;
                if owned {
                    self.owned -= n.min(self.owned);
                }
                return;
            }
            n -= left;
            self.offset = 0;
            if owned {
                self.owned -= left.min(self.owned);
            }
            if let Some(Chunk::Owned(v)) = self.chunks.pop_front() {
                pool.give(v);
            }
        }
        if self.chunks.is_empty() {
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call and records what it got.
    struct Trickle {
        cap: usize,
        got: Vec<u8>,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn owned_and_shared_chunks_go_out_in_order_through_partial_writes() {
        let budget = super::super::budget::MemoryBudget::new(1 << 20);
        let mut pool = BufferPool::default();
        let mut q = Outbound::default();
        let mut want = Vec::new();
        let mut owned = 0;
        for i in 0..50u8 {
            if i % 7 == 0 {
                let shared = Frame::new(vec![i; 1000], &budget);
                want.extend_from_slice(shared.bytes());
                q.push_shared(shared, &mut pool);
            } else if i % 2 == 0 {
                // The fan-out's fast path and the general one keep the same accounts.
                q.push_bytes(&mut pool, &[i; 34]);
                want.extend_from_slice(&[i; 34]);
                owned += 34;
            } else {
                q.append(&mut pool, |v| v.extend_from_slice(&[i; 33]));
                want.extend_from_slice(&[i; 33]);
                owned += 33;
            }
        }
        assert_eq!(q.len(), want.len());
        assert_eq!(q.owned_len(), owned);
        assert_eq!(budget.used(), 8 * 1000, "shared frames charge themselves once");
        let mut w = Trickle {
            cap: 97,
            got: Vec::new(),
            calls: 0,
        };
        for _ in 0..10_000 {
            if q.is_empty() {
                break;
            }
            q.write_to(&mut w, &mut pool).unwrap();
        }
        assert!(q.is_empty());
        assert_eq!(q.owned_len(), 0);
        assert_eq!(budget.used(), 0, "written frames give their bytes back");
        assert_eq!(w.got, want);
        q.release_if_empty(&mut pool);
        assert!(q.queue.is_none());
        assert_eq!(pool.queues.len(), 1);
    }

    /// One broadcast turn for `n` receivers: each takes a buffer, has `per_turn` bytes
    /// appended and gives it back. Returns how many took a buffer already big enough.
    fn broadcast_turn(pool: &mut BufferPool, n: usize, per_turn: usize) -> usize {
        let bufs: Vec<Vec<u8>> = (0..n).map(|_| pool.take()).collect();
        let ready = bufs.iter().filter(|b| b.capacity() >= per_turn).count();
        for mut b in bufs {
            b.extend(std::iter::repeat_n(0u8, per_turn));
            pool.give(b);
        }
        ready
    }

    #[test]
    fn large_buffers_do_not_crowd_the_small_ones_out_of_the_pool() {
        let mut pool = BufferPool::default();
        // A burst left many 64 KiB buffers behind (join notices queued to every member).
        for _ in 0..200 {
            pool.give(Vec::with_capacity(POOL_MAX_CAPACITY));
        }
        // Then 10,000 receivers get 8 frames of 34 bytes per turn.
        broadcast_turn(&mut pool, 10_000, 272);
        broadcast_turn(&mut pool, 10_000, 272);
        assert_eq!(
            broadcast_turn(&mut pool, 10_000, 272),
            10_000,
            "from the third turn on every receiver reuses a buffer of the right size"
        );
        assert!(pool.free_bytes <= POOL_SMALL_BYTES && pool.large_bytes <= POOL_LARGE_BYTES);
        assert!(pool.large.len() <= POOL_MAX_LARGE);
    }

    #[test]
    fn shedding_keeps_the_protected_handshake_and_a_partly_written_chunk() {
        let budget = super::super::budget::MemoryBudget::new(1 << 20);
        let mut pool = BufferPool::default();
        let mut q = Outbound::default();
        q.append(&mut pool, |v| v.extend_from_slice(b"HTTP/1.1 101\r\n\r\n"));
        q.protect_queued();
        // Frames after it share its chunk, then a shared frame.
        q.append(&mut pool, |v| v.extend_from_slice(&[7; 100]));
        q.push_shared(Frame::new(vec![9; 1000], &budget), &mut pool);
        q.drop_unstarted(&mut pool);
        assert_eq!((q.len(), q.owned_len()), (16, 16), "the 101 stays, the rest goes");
        assert_eq!(budget.used(), 0, "the dropped shared frame gave its bytes back");
        let mut w = Trickle {
            cap: 5,
            got: Vec::new(),
            calls: 0,
        };
        q.write_to(&mut w, &mut pool).unwrap();
        assert_eq!(
            w.got,
            b"HTTP/1.1 101\r\n\r\n"[..10],
            "two writes, then the socket is full"
        );
        // Written in part: nothing protected is left beyond the partly written chunk's rest.
        q.append(&mut pool, |v| v.extend_from_slice(&[1; 10]));
        q.drop_unstarted(&mut pool);
        assert_eq!(q.len(), 6 + 10, "the rest of the started chunk stays (it holds both)");

        // Nothing protected, nothing started: all goes.
        let mut q = Outbound::default();
        q.append(&mut pool, |v| v.extend_from_slice(&[1; 10]));
        q.drop_unstarted(&mut pool);
        assert!(q.is_empty());
    }
}
