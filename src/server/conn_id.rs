//! [`ConnId`]: the name of one connection, valid across event loops and (with a shared
//! message bus) across processes, with a text form that round-trips.

use std::fmt;
use std::str::FromStr;

/// Identifies one connection for its lifetime: which server process (node) holds it, which
/// event loop, which slot of that loop, and the slot's generation (so an id is not confused
/// with a later connection that reuses the slot).
///
/// The text form is `NODE.LOOP.SLOT.GEN` with the node in hex, e.g. `9f3a11c2.0.17.1`;
/// [`Display`](fmt::Display) and [`FromStr`] round-trip, so an application can hand ids to
/// clients and take them back.
///
/// ```
/// use wsloop::server::ConnId;
/// let id: ConnId = "9f3a11c2.1.17.3".parse().unwrap();
/// assert_eq!(id.to_string(), "9f3a11c2.1.17.3");
/// assert_eq!((id.node(), id.loop_index()), (0x9f3a11c2, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    node: u32,
    loop_idx: u16,
    slot: u32,
    generation: u32,
}

impl ConnId {
    pub(crate) fn new(node: u32, loop_idx: usize, slot: usize, generation: u32) -> ConnId {
        ConnId {
            node,
            loop_idx: loop_idx as u16,
            slot: slot as u32,
            generation,
        }
    }

    /// The server process that holds the connection (see `ServerConfig::node_id`).
    pub fn node(self) -> u32 {
        self.node
    }

    /// The event loop (0-based) that holds the connection.
    pub fn loop_index(self) -> usize {
        usize::from(self.loop_idx)
    }

    pub(crate) fn slot(self) -> usize {
        self.slot as usize
    }

    pub(crate) fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:08x}.{}.{}.{}",
            self.node, self.loop_idx, self.slot, self.generation
        )
    }
}

/// Why a text is not a [`ConnId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseConnIdError;

impl fmt::Display for ParseConnIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a connection id (expected NODE.LOOP.SLOT.GEN, node in hex)")
    }
}

impl std::error::Error for ParseConnIdError {}

impl FromStr for ConnId {
    type Err = ParseConnIdError;

    fn from_str(s: &str) -> Result<ConnId, ParseConnIdError> {
        let mut parts = s.split('.');
        let mut next = || {
            parts
                .next()
                .filter(|p| !p.is_empty() && p.len() <= 10)
                .ok_or(ParseConnIdError)
        };
        let node_text = next()?;
        if node_text.len() > 8 {
            return Err(ParseConnIdError);
        }
        let node = u32::from_str_radix(node_text, 16).map_err(|_| ParseConnIdError)?;
        let decimal = |p: &str| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse::<u32>().map_err(|_| ParseConnIdError)
            } else {
                Err(ParseConnIdError)
            }
        };
        let loop_idx = u16::try_from(decimal(next()?)?).map_err(|_| ParseConnIdError)?;
        let slot = decimal(next()?)?;
        let generation = decimal(next()?)?;
        if parts.next().is_some() {
            return Err(ParseConnIdError);
        }
        Ok(ConnId {
            node,
            loop_idx,
            slot,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        for id in [
            ConnId::new(0, 0, 0, 0),
            ConnId::new(0x9f3a_11c2, 1, 17, 3),
            ConnId::new(u32::MAX, usize::from(u16::MAX), u32::MAX as usize, u32::MAX),
        ] {
            let text = id.to_string();
            assert_eq!(text.parse::<ConnId>(), Ok(id), "{text}");
        }
        assert_eq!(ConnId::new(0xab, 2, 5, 7).to_string(), "000000ab.2.5.7");
    }

    #[test]
    fn malformed_text_is_an_error_not_a_panic() {
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "zz.0.0.0",
            "1.-1.0.0",
            "1.+1.0.0",
            "1.70000.0.0",
            "1.0.99999999999.0",
            "123456789.0.0.0",
            "1..0.0",
            "1.0.0.0 ",
        ] {
            assert_eq!(bad.parse::<ConnId>(), Err(ParseConnIdError), "{bad:?}");
        }
    }
}
