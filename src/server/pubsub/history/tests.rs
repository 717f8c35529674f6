use super::*;

#[test]
fn ids_round_trip_and_order() {
    let id: HistoryId = "1718000000000-3".parse().unwrap();
    assert_eq!(id.to_string(), "1718000000000-3");
    assert!(HistoryId::new(5, 9) < HistoryId::new(6, 0));
    assert!(HistoryId::new(5, 9) < HistoryId::new(5, 10));
    for bad in [
        "",
        "1",
        "1-",
        "-1",
        "a-1",
        "1-2-3",
        "+1-2",
        "1 -2",
        "99999999999999999999999-0",
    ] {
        assert!(bad.parse::<HistoryId>().is_err(), "{bad:?}");
    }
}

const T0: u64 = 1_700_000_000_000;

fn history(max_len: usize, ttl_ms: u64, max_bytes: usize, max_rooms: usize) -> (MemoryHistory, Arc<MemoryBudget>) {
    let budget = MemoryBudget::new(1 << 30);
    let h = MemoryHistory::new(
        max_len,
        Duration::from_millis(ttl_ms),
        max_bytes,
        max_rooms,
        budget.clone(),
        T0,
    );
    (h, budget)
}

#[test]
fn ring_replays_what_followed_and_knows_when_it_cannot() {
    let (h, _) = history(3, 60_000, 1 << 20, 100);
    let ids: Vec<HistoryId> = (0..5)
        .map(|i| h.append("t", &Stamped::text(&format!("m{i}:"), ""), T0 + i).id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let now = T0 + 10;
    // Kept: m2, m3, m4.
    match h.since("t", ids[2], now) {
        Replay::Complete(e) => assert_eq!(
            e.iter().map(|e| e.bytes.clone()).collect::<Vec<_>>(),
            vec![
                format!("m3:{}", ids[3]).into_bytes(),
                format!("m4:{}", ids[4]).into_bytes()
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.since("t", ids[4], now), Replay::Complete(Vec::new()));
    assert_eq!(h.since("t", ids[1], now), Replay::TooOld, "trimmed");
    assert_eq!(h.since("t", HistoryId::new(1, 0), now), Replay::TooOld, "another life");
    assert_eq!(
        h.since("t", HistoryId::new(u64::MAX, 0), now),
        Replay::TooOld,
        "never handed out"
    );
    assert_eq!(h.since("other", ids[4], now), Replay::TooOld);
}

#[test]
fn ring_stays_under_its_byte_bound() {
    let (h, budget) = history(1000, 60_000, 1000, 100);
    for i in 0..100 {
        h.append(&format!("t{}", i % 7), &Stamped::text(&"x".repeat(50), ""), T0 + i);
        let rooms = h.lock();
        let sum: usize = rooms.map.values().map(|r| r.bytes).sum();
        assert_eq!(rooms.total, sum, "the running total is the sum");
        assert!(rooms.total <= 1000, "{}", rooms.total);
        assert_eq!(rooms.order.len(), rooms.map.len());
        drop(rooms);
        assert_eq!(budget.used(), h.figures().1, "charged to the budget");
    }
    drop(h);
    assert_eq!(budget.used(), 0, "given back when the history goes");
}

/// Rings an append to `topic` visits.
fn visits_of(h: &MemoryHistory, topic: &str, now: u64) -> usize {
    let before = h.lock().visits;
    h.append(topic, &Stamped::text("m", ""), now);
    h.lock().visits - before
}

#[test]
fn an_append_visits_as_many_rings_with_ten_rooms_as_with_twenty_thousand() {
    // Today's rings: 10, then 20,000. An append to an existing room, to a new room, and
    // to a new room that pushes the oldest out of the byte bound each visit the same few
    // rings (the one appended to, and the one evicted) in both cases: no sum, no scan.
    let (probe, _) = history(10, 60_000, usize::MAX, usize::MAX);
    probe.append("r00000", &Stamped::text("m", ""), T0);
    let per_room = probe.figures().1;
    let mut seen = Vec::new();
    for rooms in [10usize, 20_000] {
        // Exactly full once every room is there.
        let (h, _) = history(10, 60_000, per_room * rooms, usize::MAX);
        for i in 0..rooms {
            h.append(&format!("r{i:05}"), &Stamped::text("m", ""), T0);
        }
        assert_eq!(h.figures(), (rooms, per_room * rooms));
        let existing = visits_of(&h, "r00009", T0 + 1);
        let fresh = visits_of(&h, "fresh-1", T0 + 2);
        let mut evicting = 0;
        for k in 0..5 {
            evicting = evicting.max(visits_of(&h, &format!("fresh-x{k}"), T0 + 3));
        }
        assert!(h.figures().1 <= per_room * rooms);
        seen.push((existing, fresh, evicting));
    }
    assert_eq!(
        seen[0], seen[1],
        "(existing, new, new past the bound) with 10 and 20,000 rooms"
    );
    let (existing, fresh, evicting) = seen[1];
    assert!(
        existing <= 2 && fresh <= 3 && (2..=3).contains(&evicting),
        "{:?}",
        seen[1]
    );
}

#[test]
fn the_timer_removes_expired_rooms_and_gives_their_bytes_back() {
    let (h, budget) = history(10, 1000, 1 << 20, usize::MAX);
    for i in 0..500 {
        h.append(&format!("r{i}"), &Stamped::text("hello", ""), T0);
    }
    h.append("late", &Stamped::text("hello", ""), T0 + 800);
    let (rooms, bytes) = h.figures();
    assert_eq!(rooms, 501);
    assert!(bytes >= 501 * ROOM_OVERHEAD && budget.used() == bytes, "{bytes}");
    h.tick(T0 + 900);
    assert_eq!(h.figures().0, 501, "none expired yet");
    // No append, no read: the timer alone removes them once past the TTL.
    h.tick(T0 + 1001 + TICK_MS);
    assert_eq!(h.figures().0, 1, "only the late room is left");
    h.tick(T0 + 1801 + 2 * TICK_MS);
    assert_eq!(h.figures(), (0, 0));
    assert_eq!(budget.used(), 0);
    assert!(h.lock().order.is_empty());
    assert!(
        h.lock().map.capacity() <= 64,
        "the table shrank: {}",
        h.lock().map.capacity()
    );
}

#[test]
fn the_byte_bound_bounds_the_number_of_rooms_and_drops_the_oldest_whole() {
    let max = 100 * (ROOM_OVERHEAD + 64);
    let (h, budget) = history(10, 60_000, max, usize::MAX);
    for i in 0..10_000u64 {
        h.append(
            &format!("room-{i}"),
            &Stamped::text("a short chat line", ""),
            T0 + i / 10,
        );
    }
    let (rooms, bytes) = h.figures();
    assert!((50..=100).contains(&rooms), "{rooms} rooms");
    assert!(bytes <= max && budget.used() == bytes, "{bytes} of {max}");
    // The newest rooms are kept, the oldest went.
    assert_eq!(h.since("room-0", HistoryId::new(T0, 0), T0 + 1000), Replay::TooOld);
    assert!(h.lock().map.contains_key("room-9999"));
}

#[test]
fn a_new_room_past_the_room_limit_is_refused_until_one_expires() {
    let (h, _) = history(10, 1000, 1 << 20, 3);
    for r in ["a", "b", "c"] {
        h.append(r, &Stamped::text("m", ""), T0);
    }
    let mut ran = false;
    assert_eq!(
        h.append_then("d", &Stamped::text("m", ""), T0 + 10, |_| ran = true),
        Err(Refused::TooManyRooms)
    );
    assert!(!ran, "a refused message is not handed on");
    h.append("a", &Stamped::text("m", ""), T0 + 500);
    assert_eq!(h.figures().0, 3, "an existing room still records");
    // b and c expire (a was touched later): d fits.
    h.append("d", &Stamped::text("m", ""), T0 + 1200);
    assert_eq!(h.figures().0, 2, "a and d");
}
