//! The loop's connections, indexed by slot (the mio `Token`). Each slot carries a generation
//! that changes whenever it is reused, so a stale [`super::ConnId`] (slot + generation) finds
//! nothing instead of a newer connection.

/// A slot: its current generation and what it holds.
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A vector of slots with a free list.
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The slot and generation the next [`Slab::insert`] will use.
    pub(crate) fn next_key(&self) -> (usize, u32) {
        match self.free.last() {
            Some(&slot) => {
                let generation = self.slots.get(slot).map_or(0, |s| s.generation.wrapping_add(1));
                (slot, generation)
            }
            None => (self.slots.len(), 1),
        }
    }

    /// Stores `make(slot, generation)` in a free slot and returns the slot.
    pub(crate) fn insert(&mut self, make: impl FnOnce(usize, u32) -> T) -> usize {
        let (slot, generation) = self.next_key();
        if slot == self.slots.len() {
            self.slots.push(Slot {
                generation,
                value: None,
            });
        } else {
            self.free.pop();
        }
        if let Some(s) = self.slots.get_mut(slot) {
            s.generation = generation;
            s.value = Some(make(slot, generation));
            self.len += 1;
        }
        slot
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&T> {
        self.slots.get(slot).and_then(|s| s.value.as_ref())
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.slots.get_mut(slot).and_then(|s| s.value.as_mut())
    }

    /// The value in `slot` only if the slot still has `generation`.
    pub(crate) fn get_gen_mut(&mut self, slot: usize, generation: u32) -> Option<&mut T> {
        self.slots
            .get_mut(slot)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_mut())
    }

    /// The generation of an occupied slot.
    pub(crate) fn generation(&self, slot: usize) -> Option<u32> {
        self.slots.get(slot).filter(|s| s.value.is_some()).map(|s| s.generation)
    }

    pub(crate) fn remove(&mut self, slot: usize) -> Option<T> {
        let value = self.slots.get_mut(slot).and_then(|s| s.value.take());
        if value.is_some() {
            self.free.push(slot);
            self.len -= 1;
        }
        value
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The occupied slots, collected (so the caller may remove while walking them).
    pub(crate) fn slots(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, _)| i)
            .collect()
    }

    /// Every occupied slot with its value.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.value.as_mut().map(|v| (i, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_slots_get_a_new_generation_and_stale_keys_miss() {
        let mut slab = Slab::default();
        let a = slab.insert(|slot, gen| (slot, gen, "a"));
        let b = slab.insert(|slot, gen| (slot, gen, "b"));
        assert_eq!((a, b, slab.len()), (0, 1, 2));
        let gen_a = slab.generation(a).unwrap();
        assert_eq!(slab.remove(a).map(|v| v.2), Some("a"));
        assert_eq!(slab.remove(a), None, "removing twice is harmless");
        assert_eq!(slab.len(), 1);
        let c = slab.insert(|slot, gen| (slot, gen, "c"));
        assert_eq!(c, a, "the free slot is reused");
        let gen_c = slab.generation(c).unwrap();
        assert_ne!(gen_c, gen_a);
        assert!(slab.get_gen_mut(a, gen_a).is_none(), "a stale key finds nothing");
        assert_eq!(slab.get_gen_mut(c, gen_c).map(|v| v.2), Some("c"));
        assert_eq!(slab.get(c).map(|v| (v.0, v.1)), Some((c, gen_c)));
        assert_eq!(slab.slots(), vec![0, 1]);
        assert_eq!(slab.iter_mut().count(), 2);
    }

    #[test]
    fn next_key_predicts_insert() {
        let mut slab = Slab::default();
        for round in 0..3 {
            let predicted = slab.next_key();
            let slot = slab.insert(|slot, gen| (slot, gen));
            assert_eq!(slab.get(slot).copied(), Some(predicted), "round {round}");
            slab.remove(slot);
        }
    }
}
