//! One run, the peer harness's measurement loop on the chute client: every producer and
//! consumer has a connection and a thread of its own, which also drives that connection's I/O
//! (`Connection::connect_driven` under `async_io::block_on`, so the socket is read, written
//! and waited on by the thread that uses it). Producers keep
//! [`PUBLISH_WINDOW`] publishes unconfirmed, consumers hold [`PREFETCH`] deliveries and ack
//! each on its own, every message is checked off by sequence number, and the run lasts from
//! the first publish to the last ack.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::Timer;
use chute_client::{
    ConnectOptions, Connection, ConnectionDriver, Destination, PublishMessage, PublishOutcome,
    Range, SubscribeOptions, Subscription,
};
use futures::channel::oneshot;
use futures::executor::block_on;
use futures::future::{self, Either, FutureExt, Shared};
use futures::stream::StreamExt;
use hdrhistogram::Histogram;

use crate::bench::measure::{latency_histogram, Measured};
use crate::bench::pace::Schedule;
use crate::bench::payload;
use crate::bench::progress::Progress;
use crate::bench::workload::{Workload, PREFETCH, PUBLISH_WINDOW};

/// How often the main thread looks at the run: progress, failures, the deadline.
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// How long a failed run's threads get to return once their connections are closed. They
/// should return at once; one that does not is left behind rather than hang the command.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Which messages arrived, shared by the run's threads.
struct Tally {
    seen: Vec<AtomicBool>,
    distinct: AtomicU64,
    duplicates: AtomicU64,
    confirmed: AtomicU64,
    done: AtomicBool,
    /// Fired once every message has arrived, to wake consumers waiting for deliveries.
    done_signal: Mutex<Option<oneshot::Sender<()>>>,
    /// The first error of any thread: the run is lost, the others are stopped.
    failure: Mutex<Option<String>>,
}

type DoneSignal = Shared<oneshot::Receiver<()>>;

impl Tally {
    fn new(messages: u64) -> (Arc<Tally>, DoneSignal) {
        let (done_tx, done_rx) = oneshot::channel();
        let tally = Tally {
            seen: (0..messages).map(|_| AtomicBool::new(false)).collect(),
            distinct: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            done: AtomicBool::new(false),
            done_signal: Mutex::new(Some(done_tx)),
            failure: Mutex::new(None),
        };
        (Arc::new(tally), done_rx.shared())
    }

    /// Checks off one delivery: a second arrival of a sequence number is a duplicate.
    fn check_off(&self, seq: u64) -> Result<(), String> {
        let slot = usize::try_from(seq)
            .ok()
            .and_then(|at| self.seen.get(at))
            .ok_or_else(|| format!("received sequence number {seq}, which this run never sent"))?;
        if slot.swap(true, Ordering::Relaxed) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        } else if self.distinct.fetch_add(1, Ordering::Relaxed) + 1 == self.seen.len() as u64 {
            self.finish();
        }
        Ok(())
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        if let Some(signal) = self.done_signal.lock().expect("tally lock").take() {
            let _ = signal.send(());
        }
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    fn fail(&self, error: String) {
        self.failure.lock().expect("tally lock").get_or_insert(error);
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().expect("tally lock").clone()
    }
}

struct ProducerSide {
    confirm_us: Histogram<u64>,
    max_send_lag_us: Option<u64>,
}

struct ConsumerSide {
    e2e_us: Histogram<u64>,
    /// On the payload clock ([`payload::now_ns`]).
    last_ack_ns: Option<u64>,
}

/// Runs `workload` against `queue` (which must exist and be empty) on the server at `url`.
/// Fails if any message is missing when `timeout` runs out, or on any error.
pub fn run(
    url: &str,
    queue: &str,
    workload: &Workload,
    timeout: Duration,
    progress: &mut Progress,
) -> Result<Measured, String> {
    let (consumers, producers) = block_on(connect(url, queue, workload))?;
    let connections: Vec<Connection> = consumers
        .iter()
        .map(|(c, ..)| c)
        .chain(producers.iter().map(|(c, _)| c))
        .cloned()
        .collect();
    let (tally, done) = Tally::new(workload.messages);

    // Consumers first, so that they wait before the first publish, as in the harness.
    let mut consumer_threads = Vec::new();
    for (k, (connection, mut driver, deliveries)) in consumers.into_iter().enumerate() {
        let (tally, done) = (tally.clone(), done.clone());
        consumer_threads.push(spawn(format!("bench-consumer-{k}"), tally.clone(), move || {
            async_io::block_on(driver.run_until(consume(connection, deliveries, &tally, done)))
        })?);
    }
    let start = Instant::now();
    let start_ns = payload::now_ns();
    let mut producer_threads = Vec::new();
    for (k, (connection, mut driver)) in producers.into_iter().enumerate() {
        let share = workload.producer_share(k as u32);
        let size_bytes = workload.size_bytes as usize;
        let rate_per_s = workload.producer_rate_per_s();
        let (tally, queue) = (tally.clone(), queue.to_string());
        producer_threads.push(spawn(format!("bench-producer-{k}"), tally.clone(), move || {
            let work = produce(connection, &queue, share, size_bytes, rate_per_s, &tally);
            async_io::block_on(driver.run_until(work))
        })?);
    }

    let deadline = start + timeout;
    let mut timed_out = false;
    let mut stopped_at = None;
    while !producer_threads.iter().all(JoinHandle::is_finished)
        || !consumer_threads.iter().all(JoinHandle::is_finished)
    {
        match stopped_at {
            None if tally.failure().is_some() || Instant::now() >= deadline => {
                // Closing the connections fails every pending confirm and ends every
                // subscription, so the threads return.
                timed_out = tally.failure().is_none();
                stopped_at = Some(Instant::now());
                for connection in &connections {
                    block_on(connection.clone().close());
                }
            }
            Some(at) if at.elapsed() > STOP_GRACE => {
                progress.finish();
                return Err(format!(
                    "{} and its threads did not stop within {} s of closing their connections",
                    tally.failure().unwrap_or_else(|| "the run timed out".into()),
                    STOP_GRACE.as_secs()
                ));
            }
            _ => {}
        }
        let confirmed = tally.confirmed.load(Ordering::Relaxed);
        progress.update(confirmed, tally.distinct.load(Ordering::Relaxed), start.elapsed());
        std::thread::sleep(WATCH_EVERY);
    }
    progress.finish();

    let producer_sides: Vec<_> = producer_threads.into_iter().map(join).collect();
    let consumer_sides: Vec<_> = consumer_threads.into_iter().map(join).collect();
    let received = tally.distinct.load(Ordering::Relaxed);
    if timed_out {
        return Err(format!(
            "timed out after {} s with {received} of {} messages received",
            timeout.as_secs(),
            workload.messages
        ));
    }
    if let Some(error) = tally.failure() {
        return Err(format!("{error} ({received} of {} messages received)", workload.messages));
    }
    let (mut confirm_us, mut e2e_us) = (latency_histogram(), latency_histogram());
    let mut max_send_lag_us = None;
    for side in producer_sides {
        let side = side?;
        confirm_us.add(&side.confirm_us).expect("histograms of equal bounds");
        max_send_lag_us = max_send_lag_us.max(side.max_send_lag_us);
    }
    let mut end_ns = start_ns;
    for side in consumer_sides {
        let side = side?;
        e2e_us.add(&side.e2e_us).expect("histograms of equal bounds");
        end_ns = end_ns.max(side.last_ack_ns.unwrap_or(start_ns));
    }
    assert_eq!(received, workload.messages, "every thread ended well, so every message arrived");
    Ok(Measured {
        seconds: (end_ns - start_ns) as f64 / 1e9,
        publish_confirm_us: confirm_us,
        e2e_us,
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        max_send_lag_us,
    })
}

type Consumer = (Connection, ConnectionDriver, Subscription);

/// The consumers' connections, each subscribed, and the producers' connections, each with the
/// driver its thread will poll.
async fn connect(
    url: &str,
    queue: &str,
    workload: &Workload,
) -> Result<(Vec<Consumer>, Vec<(Connection, ConnectionDriver)>), String> {
    let options =
        SubscribeOptions { prefetch: PREFETCH, auto_credit: true, lease_ms: None, rate: None };
    let open = || async {
        Connection::connect_driven(url, ConnectOptions::default()).await.map_err(|e| e.to_string())
    };
    let mut consumers = Vec::new();
    for _ in 0..workload.consumers {
        let (connection, mut driver) = open().await?;
        let deliveries = driver
            .run_until(connection.subscribe_with(queue, options.clone()))
            .await
            .map_err(|e| format!("subscribe to {queue}: {e}"))?;
        consumers.push((connection, driver, deliveries));
    }
    let mut producers = Vec::new();
    for _ in 0..workload.producers {
        producers.push(open().await?);
    }
    Ok((consumers, producers))
}

fn spawn<T: Send + 'static>(
    name: String,
    tally: Arc<Tally>,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<JoinHandle<Result<T, String>>, String> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let result = work();
            if let Err(error) = &result {
                tally.fail(error.clone());
            }
            result
        })
        .map_err(|e| format!("cannot start a bench thread: {e}"))
}

fn join<T>(thread: JoinHandle<Result<T, String>>) -> Result<T, String> {
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Publishes sequence numbers `first..first + count`, keeping at most [`PUBLISH_WINDOW`]
/// unconfirmed, paced if `rate_per_s` is given.
async fn produce(
    connection: Connection,
    queue: &str,
    (first, count): (u64, u64),
    size_bytes: usize,
    rate_per_s: Option<f64>,
    tally: &Tally,
) -> Result<ProducerSide, String> {
    let destination = Destination::Queue(queue.to_string());
    let mut confirm_us = latency_histogram();
    let mut send_lag = Duration::ZERO;
    let mut outcomes = connection.publish_outcomes().map_err(|e| format!("publish: {e}"))?;
    // (sequence number, send time) of each publish not yet confirmed, oldest first.
    let mut in_flight: VecDeque<(u64, u64)> = VecDeque::with_capacity(PUBLISH_WINDOW);
    let start = Instant::now();
    let schedule = rate_per_s.map(|rate| Schedule::new(start, rate));
    let mut i = 0u64;
    loop {
        while i < count && in_flight.len() < PUBLISH_WINDOW {
            // Unpaced, every message is due at once: no clock read per message.
            if let Some(schedule) = schedule {
                let now = Instant::now();
                if schedule.due(i) > now {
                    break;
                }
                send_lag = send_lag.max(now - schedule.due(i));
            }
            // Stamped just before the publish: the confirm latency includes any wait for the
            // client's window, as the harness's does.
            let (payload, sent_ns) = payload::stamp(first + i, size_bytes);
            let seq = connection
                .publish_tracked(&destination, false, PublishMessage::new(payload))
                .await
                .map_err(|e| format!("publish: {e}"))?;
            in_flight.push_back((seq, sent_ns));
            i += 1;
        }
        if i == count && in_flight.is_empty() {
            break;
        }
        let outcome = match schedule {
            // Room to publish, but the next message is not due: wait for its tick or a confirm.
            Some(schedule) if i < count && in_flight.len() < PUBLISH_WINDOW => {
                let tick = Timer::at(schedule.wake_at(i));
                if in_flight.is_empty() {
                    tick.await;
                    continue;
                }
                match future::select(outcomes.next(), tick).await {
                    Either::Left((outcome, _)) => outcome,
                    Either::Right(_) => continue,
                }
            }
            // Unpaced, the loop above stops only on a full window or when all are sent, and
            // either way something is in flight.
            _ => outcomes.next().await,
        };
        let confirmed = match outcome {
            Some(PublishOutcome::Confirmed(range)) => range,
            Some(PublishOutcome::Refused { seq, error }) => {
                return Err(format!("publish {seq} not confirmed: {error}"))
            }
            None => {
                let reason = connection.closed_reason().map(|e| e.to_string());
                return Err(format!(
                    "publish not confirmed: {}",
                    reason.unwrap_or_else(|| "the connection ended".into())
                ));
            }
        };
        let now_ns = payload::now_ns();
        for sent_ns in take_confirmed(&mut in_flight, confirmed)? {
            confirm_us.saturating_record(payload::micros_between(sent_ns, now_ns));
        }
        tally.confirmed.fetch_add(u64::from(confirmed.count), Ordering::Relaxed);
    }
    connection.close().await;
    let max_send_lag_us = schedule.map(|_| send_lag.as_micros() as u64);
    Ok(ProducerSide { confirm_us, max_send_lag_us })
}

/// The send times of the publishes `range` confirms, taken off the front of `in_flight`. One
/// queue confirms in publish order, so a range that does not start at the oldest publish in
/// flight is an error.
fn take_confirmed(
    in_flight: &mut VecDeque<(u64, u64)>,
    range: Range,
) -> Result<impl Iterator<Item = u64> + '_, String> {
    let expected = in_flight.front().map(|(seq, _)| *seq);
    let count = usize::try_from(range.count).unwrap_or(usize::MAX);
    if expected != Some(range.first) || count > in_flight.len() {
        return Err(format!(
            "confirm of {} publishes from {} while {} publishes from {expected:?} were in flight",
            range.count,
            range.first,
            in_flight.len()
        ));
    }
    Ok(in_flight.drain(..count).map(|(_, sent_ns)| sent_ns))
}

/// Receives until every message of the run has arrived (at this consumer or another), acking
/// each delivery on its own.
async fn consume(
    connection: Connection,
    mut deliveries: Subscription,
    tally: &Tally,
    mut done: DoneSignal,
) -> Result<ConsumerSide, String> {
    let mut e2e_us = latency_histogram();
    let mut last_ack_ns = None;
    while !tally.is_done() {
        let delivery = match future::select(deliveries.next(), &mut done).await {
            Either::Left((Some(delivery), _)) => delivery,
            Either::Left((None, _)) => {
                let reason = connection.closed_reason().map(|e| e.to_string());
                return Err(reason.unwrap_or_else(|| "the subscription ended".into()));
            }
            Either::Right(_) => break,
        };
        let (sent_ns, seq) = payload::parse(delivery.payload())?;
        let now_ns = payload::now_ns();
        e2e_us.saturating_record(payload::micros_between(sent_ns, now_ns));
        tally.check_off(seq)?;
        delivery.ack().map_err(|e| format!("ack: {e}"))?;
        last_ack_ns = Some(now_ns);
    }
    // Closing sends the acks still buffered, then waits for the socket to close.
    drop(deliveries);
    connection.close().await;
    Ok(ConsumerSide { e2e_us, last_ack_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sequence number counts once; the last one ends the run; a repeat is a duplicate;
    /// a number the run never sent is an error.
    #[test]
    fn tally_checks_off_each_message_once() {
        let (tally, mut done) = Tally::new(3);
        tally.check_off(0).unwrap();
        tally.check_off(2).unwrap();
        tally.check_off(0).unwrap();
        assert!(!tally.is_done());
        assert_eq!(futures::FutureExt::now_or_never(&mut done), None);
        tally.check_off(1).unwrap();
        assert!(tally.is_done());
        assert!(futures::FutureExt::now_or_never(&mut done).is_some());
        assert_eq!(tally.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(tally.distinct.load(Ordering::Relaxed), 3);
        assert!(tally.check_off(3).is_err());
    }

    /// Confirms take the oldest publishes in flight; a confirm that skips one is an error, not
    /// a miscount.
    #[test]
    fn confirms_take_publishes_in_order() {
        let mut in_flight: VecDeque<(u64, u64)> = (1..=5).map(|seq| (seq, seq * 100)).collect();
        let taken: Vec<u64> =
            take_confirmed(&mut in_flight, Range { first: 1, count: 2 }).unwrap().collect();
        assert_eq!(taken, [100, 200]);
        assert!(take_confirmed(&mut in_flight, Range { first: 4, count: 1 }).is_err());
        assert!(take_confirmed(&mut in_flight, Range { first: 3, count: 4 }).is_err());
        assert_eq!(in_flight.len(), 3, "a refused confirm takes nothing");
    }

    #[test]
    fn the_first_failure_is_the_one_reported() {
        let (tally, _) = Tally::new(1);
        tally.fail("first".into());
        tally.fail("second".into());
        assert_eq!(tally.failure().as_deref(), Some("first"));
    }
}
