use std::sync::Arc;
use std::time::{Duration, Instant};

use mig_proto::inference::v1::{ModelKind, WorkerOrigin};
use mig_proto::worker::v1::{Batching, WorkerInfo};

use super::*;
use crate::registry::WorkerHandle;

/// A registry with one healthy worker of `m` that batches `batch`.
fn fleet(batch: u32) -> (Arc<Registry>, Arc<WorkerHandle>) {
    let registry = Arc::new(Registry::default());
    let w = Arc::new(
        WorkerHandle::new("m".into(), "http://127.0.0.1:1".into(), WorkerOrigin::Fleet).unwrap(),
    );
    w.record_probe(Some(WorkerInfo {
        model: "m".into(),
        kind: ModelKind::Generate as i32,
        batching: Some(Batching {
            max_batch_size: batch,
            ..Default::default()
        }),
        ..Default::default()
    }));
    registry.add(w.clone());
    (registry, w)
}

fn admission(batch: u32, limits: QueueLimits) -> (Arc<Admission>, Arc<WorkerHandle>) {
    let (registry, w) = fleet(batch);
    (Admission::new(registry, GatewayMetrics::new(), limits), w)
}

fn ticket(tenant: &str, priority: Priority) -> Ticket<'_> {
    Ticket {
        model: "m",
        profile: "",
        tenant,
        priority,
        cost: 10,
        deadline: None,
    }
}

#[tokio::test]
async fn a_request_waits_for_room_and_starts_when_a_slot_frees() {
    let (admission, _) = admission(2, QueueLimits::default());
    let a = admission
        .acquire(ticket("t", Priority::Standard))
        .await
        .unwrap();
    let _b = admission
        .acquire(ticket("t", Priority::Standard))
        .await
        .unwrap();
    let waiting = {
        let admission = admission.clone();
        tokio::spawn(async move { admission.acquire(ticket("t", Priority::Standard)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "the worker is full: it must wait");
    drop(a);
    let c = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("started once a slot was freed")
        .unwrap();
    assert!(c.is_ok());
}

#[tokio::test]
async fn the_lone_request_of_another_tenant_starts_before_a_crowd() {
    let (admission, _) = admission(1, QueueLimits::default());
    let running = admission
        .acquire(ticket("crowd", Priority::Standard))
        .await
        .unwrap();
    let started = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (admission, started) = (admission.clone(), started.clone());
        let tenant = if i == 19 { "lone" } else { "crowd" };
        tasks.push(tokio::spawn(async move {
            let slot = admission
                .acquire(ticket(tenant, Priority::Standard))
                .await
                .unwrap();
            started.lock().unwrap().push(tenant);
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(slot);
        }));
        // Arrival order is the order of the pushes.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(running);
    for t in tasks {
        t.await.unwrap();
    }
    let order = started.lock().unwrap().clone();
    let lone = order.iter().position(|t| *t == "lone").unwrap();
    // A turn of the crowd is a quantum of 64 tokens: 6 requests of 10.
    assert!(lone <= 7, "the lone request started {lone}th: {order:?}");
}

#[tokio::test]
async fn critical_goes_first_and_a_full_queue_sheds_the_sheddable() {
    let limits = QueueLimits {
        max_waiting: 2,
        max_wait: Duration::from_secs(30),
        keep_room: false,
    };
    let (admission, _) = admission(1, limits);
    let running = admission
        .acquire(ticket("a", Priority::Standard))
        .await
        .unwrap();
    let spawn = |tenant: &'static str, p: Priority| {
        let admission = admission.clone();
        tokio::spawn(async move { admission.acquire(ticket(tenant, p)).await.map(drop) })
    };
    let shed = spawn("s", Priority::Sheddable);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let standard = spawn("n", Priority::Standard);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Full: the critical request takes the sheddable one's place.
    let critical = spawn("c", Priority::Critical);
    let evicted = tokio::time::timeout(Duration::from_secs(1), shed)
        .await
        .unwrap()
        .unwrap();
    match evicted {
        Err(e @ Shed::Evicted { .. }) => assert!(e.retry_after() >= Duration::from_secs(1)),
        other => panic!("{other:?}"),
    }
    // Full of more important ones: a sheddable arrival is refused at once.
    let refused = admission.acquire(ticket("s", Priority::Sheddable)).await;
    assert!(
        matches!(refused, Err(Shed::QueueFull { waiting: 2, .. })),
        "{refused:?}"
    );
    drop(running);
    tokio::time::timeout(Duration::from_secs(1), critical)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), standard)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_request_that_cannot_finish_in_time_is_refused_at_once() {
    let (admission, _) = admission(1, QueueLimits::default());
    // Measure a drain rate: 8 requests of 10 tokens, 20 ms each.
    for _ in 0..8 {
        let slot = admission
            .acquire(ticket("t", Priority::Standard))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(slot);
    }
    let _running = admission
        .acquire(ticket("t", Priority::Standard))
        .await
        .unwrap();
    let started = Instant::now();
    let answer = admission
        .acquire(Ticket {
            deadline: Some(Instant::now() + Duration::from_millis(5)),
            ..ticket("t", Priority::Standard)
        })
        .await;
    match answer {
        Err(e @ Shed::Deadline { .. }) => {
            assert!(e.to_string().contains("past its deadline"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(5),
        "refused at once"
    );
    // A request with time enough queues, and runs out with
    // DEADLINE_EXCEEDED if the slot does not free.
    let answer = admission
        .acquire(Ticket {
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            ..ticket("t", Priority::Standard)
        })
        .await;
    assert_eq!(answer.err(), Some(Shed::Expired));
}

#[tokio::test]
async fn a_waiter_that_gives_up_leaves_no_slot_behind() {
    let (admission, _) = admission(1, QueueLimits::default());
    let running = admission
        .acquire(ticket("t", Priority::Standard))
        .await
        .unwrap();
    let gone = {
        let admission = admission.clone();
        tokio::spawn(async move { admission.acquire(ticket("t", Priority::Standard)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    gone.abort();
    let _ = gone.await;
    drop(running);
    // The slot is free again: a new request starts at once.
    let again = tokio::time::timeout(
        Duration::from_millis(200),
        admission.acquire(ticket("t", Priority::Standard)),
    )
    .await;
    assert!(matches!(again, Ok(Ok(_))));
    assert_eq!(admission.queue("m", "").lock().running, 1);
}

#[tokio::test]
async fn without_a_healthy_worker_routing_answers() {
    let (admission, w) = admission(1, QueueLimits::default());
    w.mark_unhealthy();
    let slot = admission
        .acquire(ticket("t", Priority::Standard))
        .await
        .unwrap();
    assert!(slot.held.is_none());
}

#[tokio::test]
async fn a_request_waits_for_a_worker_that_is_restarting_not_for_one_never_up() {
    let limits = QueueLimits {
        max_wait: Duration::from_millis(300),
        ..QueueLimits::default()
    };
    let (admission, w) = admission(1, limits);
    drop(
        admission
            .acquire(ticket("t", Priority::Standard))
            .await
            .unwrap(),
    );
    // Its only worker dies (the supervisor restarts it): a request waits.
    w.mark_unhealthy();
    let waiting = {
        let admission = admission.clone();
        tokio::spawn(async move { admission.acquire(ticket("t", Priority::Standard)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "it must wait for the restart");
    // Back: the pump starts it on a counted slot.
    w.record_probe(Some(WorkerInfo {
        model: "m".into(),
        kind: ModelKind::Generate as i32,
        batching: Some(Batching {
            max_batch_size: 1,
            ..Default::default()
        }),
        ..Default::default()
    }));
    admission.pump_all();
    let slot = waiting.await.unwrap().unwrap();
    assert!(slot.held.is_some());
    drop(slot);
    // Down again, and not back within the wait limit: UNAVAILABLE's shed.
    w.mark_unhealthy();
    let started = Instant::now();
    match admission.acquire(ticket("t", Priority::Standard)).await {
        Err(Shed::Down { workers: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Down for longer than the wait limit: answered at once (routing says
    // no worker is healthy).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let slot = tokio::time::timeout(
        Duration::from_millis(100),
        admission.acquire(ticket("t", Priority::Standard)),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(slot.held.is_none());
}

#[tokio::test]
async fn with_tenants_room_is_kept_for_one_with_nothing_running() {
    // A queue of one: full once the crowd's fourth waits.
    let limits = QueueLimits {
        keep_room: true,
        max_waiting: 1,
        max_wait: Duration::from_secs(30),
    };
    let (admission, _) = admission(4, limits);
    let mut crowd = Vec::new();
    for _ in 0..3 {
        crowd.push(
            admission
                .acquire(ticket("crowd", Priority::Standard))
                .await
                .unwrap(),
        );
    }
    // The crowd's fourth waits: one place of four is kept.
    let fourth = {
        let admission = admission.clone();
        tokio::spawn(async move { admission.acquire(ticket("crowd", Priority::Standard)).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!fourth.is_finished());
    // A tenant with nothing running starts at once, beside the waiting
    // crowd, though the queue is full.
    let lone = tokio::time::timeout(
        Duration::from_millis(100),
        admission.acquire(ticket("lone", Priority::Standard)),
    )
    .await
    .expect("the kept place is the lone tenant's");
    assert!(lone.is_ok());
    drop(crowd.pop());
    tokio::time::timeout(Duration::from_secs(1), fourth)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn every_shed_reason_has_its_zero_series() {
    let sheds = [
        Shed::QueueFull {
            model: "m".into(),
            waiting: 1,
            retry_after_s: 1,
        },
        Shed::TooLong {
            model: "m".into(),
            wait_ms: 1,
            limit_ms: 1,
            retry_after_s: 1,
        },
        Shed::Deadline {
            model: "m".into(),
            wait_ms: 1,
            service_ms: 1,
            left_ms: 1,
            retry_after_s: 1,
        },
        Shed::Evicted {
            model: "m".into(),
            retry_after_s: 1,
        },
        Shed::Waited {
            model: "m".into(),
            waited_ms: 1,
            retry_after_s: 1,
        },
        Shed::Expired,
        Shed::Down {
            model: "m".into(),
            workers: 1,
            waited_ms: 1,
        },
    ];
    let reasons: Vec<&str> = sheds.iter().map(Shed::reason).collect();
    assert_eq!(reasons, SHED_REASONS);
}

#[tokio::test]
async fn a_request_naming_a_profile_waits_for_room_on_that_profile_only() {
    let registry = Arc::new(Registry::default());
    let mut workers = Vec::new();
    for (port, profile) in [(1, "small"), (2, "big")] {
        let w = Arc::new(
            WorkerHandle::new(
                "m".into(),
                format!("http://127.0.0.1:{port}"),
                WorkerOrigin::Fleet,
            )
            .unwrap(),
        );
        w.record_probe(Some(WorkerInfo {
            model: "m".into(),
            kind: ModelKind::Generate as i32,
            profile: profile.into(),
            batching: Some(Batching {
                max_batch_size: 1,
                ..Default::default()
            }),
            ..Default::default()
        }));
        registry.add(w.clone());
        workers.push(w);
    }
    let admission = Admission::new(registry, GatewayMetrics::new(), QueueLimits::default());
    let on = |profile| Ticket {
        profile,
        ..ticket("t", Priority::Standard)
    };
    let small = admission.acquire(on("small")).await.unwrap();
    // The small slice's one place is taken: the next request for it
    // waits, though the big slice has room.
    let waiting = {
        let admission = admission.clone();
        tokio::spawn(async move { admission.acquire(on("small")).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "the small slice is full: it must wait"
    );
    let big = tokio::time::timeout(Duration::from_millis(200), admission.acquire(on("big")))
        .await
        .expect("the big slice has room")
        .unwrap();
    assert!(big.held.is_some());
    drop(small);
    let next = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(next.held.is_some());
}
