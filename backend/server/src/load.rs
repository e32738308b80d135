//! Synthetic load on an event store: position reports of about 300 bytes, appended by
//! concurrent writers each to its own stream. Used by `muster store load` (a writer process
//! that reports every acknowledged append, for crash tests) and by `muster bench store`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use muster_store::{EventStore, ExpectedState, NewEvent, StreamName};
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// One synthetic event of about 300 bytes of JSON.
pub fn sample_event(rng: &mut impl Rng, writer: usize, seq: u64) -> NewEvent {
    let data = serde_json::json!({
        "unit_id": format!("unit-{writer:05}"),
        "seq": seq,
        "lat": 60.16 + rng.random::<f64>() * 0.02,
        "lon": 24.93 + rng.random::<f64>() * 0.03,
        "speed_mps": rng.random::<f64>() * 25.0,
        "heading_deg": rng.random::<f64>() * 360.0,
        "accuracy_m": 3.0 + rng.random::<f64>() * 10.0,
        "source": "avl",
        "reported_at": "2026-11-23T12:00:00.000Z",
        "note": "synthetic position report for load measurement; padded to a realistic size.."
    });
    NewEvent::json(Uuid::now_v7(), "UnitPositionReported", 1, &data)
        .expect("synthetic events are valid")
}

/// The stream of writer `w`.
pub fn writer_stream(prefix: &str, w: usize) -> StreamName {
    StreamName::parse(format!("{prefix}-{w:05}")).expect("valid stream name")
}

/// Settings of a load run.
#[derive(Clone, Debug)]
pub struct Load {
    /// Concurrent writers.
    pub writers: usize,
    /// Events per append.
    pub batch: usize,
    /// Events to append in all (`u64::MAX`: until stopped).
    pub events: u64,
    /// Stream name prefix.
    pub prefix: String,
    /// Seed of the synthetic data.
    pub seed: u64,
}

/// One appended event as an acknowledgement names it: its id and the CRC-32 of its data.
pub type EventDigest = (Uuid, u32);

/// Runs `load` against `store`; `on_ack(writer, stream, last revision, last position, the
/// append's events, latency)` is called after each acknowledged append. Each writer appends
/// with its stream's exact expected revision, continuing streams that already exist.
pub async fn run<F>(store: Arc<dyn EventStore>, load: Load, on_ack: F) -> anyhow::Result<u64>
where
    F: Fn(usize, &StreamName, u64, u64, &[EventDigest], std::time::Duration)
        + Send
        + Sync
        + 'static,
{
    let remaining = Arc::new(AtomicU64::new(load.events));
    let on_ack = Arc::new(on_ack);
    let mut tasks = Vec::with_capacity(load.writers);
    for w in 0..load.writers {
        let store = store.clone();
        let remaining = remaining.clone();
        let on_ack = on_ack.clone();
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                load.seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let stream = writer_stream(&load.prefix, w);
            let mut expected = match store.stream_revision(&stream).await? {
                Some(r) => ExpectedState::Revision(r),
                None => ExpectedState::NoStream,
            };
            let mut seq = 0u64;
            let mut written = 0u64;
            loop {
                let want = load.batch as u64;
                let got = remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                        (r > 0).then(|| r.saturating_sub(want))
                    })
                    .map(|before| before.min(want));
                let Ok(n) = got else { break };
                let events: Vec<NewEvent> = (0..n)
                    .map(|_| {
                        seq += 1;
                        sample_event(&mut rng, w, seq)
                    })
                    .collect();
                let digests: Vec<EventDigest> = events
                    .iter()
                    .map(|e| (e.id, crc32fast::hash(&e.data)))
                    .collect();
                let started = std::time::Instant::now();
                let result = store.append(&stream, expected, events).await?;
                on_ack(
                    w,
                    &stream,
                    result.next_expected_revision,
                    result.position.0,
                    &digests,
                    started.elapsed(),
                );
                expected = ExpectedState::Revision(result.next_expected_revision);
                written += n;
            }
            anyhow::Ok(written)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// `muster store load`: prints `ack <writer> <stream> <revision> <position> <events>` per
/// acknowledged append, flushed at once, so a test that kills the process knows what was
/// acknowledged. `<revision>` and `<position>` are those of the append's last event;
/// `<events>` is `<id>:<crc32 of data, hex>` for each event of the append, oldest first,
/// joined by commas.
pub async fn run_printing(store: Arc<dyn EventStore>, load: Load) -> anyhow::Result<u64> {
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let total = run(
        store,
        load,
        move |w, stream, revision, position, events, _| {
            let events: Vec<String> = events
                .iter()
                .map(|(id, crc)| format!("{id}:{crc:08x}"))
                .collect();
            let mut out = out.lock().unwrap();
            let _ = writeln!(
                out,
                "ack {w} {stream} {revision} {position} {}",
                events.join(",")
            );
            let _ = out.flush();
        },
    )
    .await?;
    println!("done {total}");
    Ok(total)
}
