use super::*;

struct Nowhere;

impl MessageBus for Nowhere {
    fn describe(&self) -> String {
        "nowhere".into()
    }
    fn publisher(&self) -> Result<Box<dyn BusPublisher>, BusError> {
        Err(BusError("nowhere".into()))
    }
    fn subscribe(&self, _: &[Channel], _: &mut dyn SubscriberSink) -> Result<(), BusError> {
        Err(BusError("nowhere".into()))
    }
}

#[test]
fn the_queue_is_charged_and_bounded_by_bytes() {
    // A bus that takes nothing (as Redis stopped): recorded 1 MiB messages queue up to an
    // eighth of the budget, charged to it, then are refused; what the publisher thread is
    // done with is given back.
    let budget = MemoryBudget::new(64 << 20);
    let link = BusLink::new(Arc::new(Nowhere), budget.clone());
    link.stats.connected.store(true, Ordering::Release);
    let body = "x".repeat(1 << 20);
    let stamp = Stamped::text(&body, "");
    let mut queued = 0;
    while link.record(1, "room", &stamp, None, None) == Queued::Yes {
        queued += 1;
        assert!(queued < 100, "never refused");
    }
    let held = link.stats.info().queued_bytes;
    assert_eq!(queued, 7, "8 MiB hold seven 1 MiB messages and their headers");
    assert!(held <= 8 << 20 && held > 7 << 20, "{held}");
    assert_eq!(budget.used(), held, "charged");
    assert_eq!(link.stats.info().refused, 1);
    let rx = link.rx.lock().unwrap().take().unwrap();
    let jobs: Vec<Job> = rx.try_iter().collect();
    link.release(jobs.iter().map(Job::cost).sum());
    assert_eq!((budget.used(), link.stats.info().queued_bytes), (0, 0));
    assert_eq!(link.record(1, "room", &stamp, None, None), Queued::Yes, "room again");
    link.stats.connected.store(false, Ordering::Release);
    assert_eq!(link.record(1, "room", &stamp, None, None), Queued::Unavailable);
}
