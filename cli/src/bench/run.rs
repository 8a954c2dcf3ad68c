//! One run, the peer harness's measurement loop on the chute client: every producer and
//! consumer has a connection of its own, driven by the thread that uses it
//! (`Connection::connect_driven` under `async_io::block_on`, so the socket is read, written
//! and waited on by that thread); `placement` decides which thread holds which connections.
//! Producers keep [`PUBLISH_WINDOW`] publishes unconfirmed, consumers hold [`PREFETCH`]
//! deliveries and ack each on its own, every message is checked off by sequence number (and
//! must arrive on the queue it was published to), and the run lasts from the first publish to
//! the last ack; each queue's own rate runs to the last ack on that queue.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Target;
use async_io::Timer;
use chute_client::{
    Connection, ConnectionDriver, Destination, PublishMessage, PublishOutcome, Range as SeqRange,
    SubscribeOptions, Subscription,
};
use futures::channel::oneshot;
use futures::executor::block_on;
use futures::future::{self, Either, FutureExt, Shared};
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;

use crate::bench::measure::{fairness_min_over_mean, latency_histogram, Measured};
use crate::bench::pace::Schedule;
use crate::bench::payload;
use crate::bench::placement::{self, Role};
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
    /// The first error of any connection: the run is lost, the others are stopped.
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

    /// Checks off one delivery from a queue that was sent the sequence numbers `sent_here`: a
    /// second arrival of a sequence number is a duplicate; one published to another queue, or
    /// never published, is an error.
    fn check_off(&self, seq: u64, sent_here: &Range<u64>) -> Result<(), String> {
        let slot = usize::try_from(seq)
            .ok()
            .and_then(|at| self.seen.get(at))
            .ok_or_else(|| format!("received sequence number {seq}, which this run never sent"))?;
        if !sent_here.contains(&seq) {
            return Err(format!(
                "received sequence number {seq}, which was published to another queue (this \
                 queue was sent {sent_here:?})"
            ));
        }
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
    queue: u32,
    e2e_us: Histogram<u64>,
    /// On the payload clock ([`payload::now_ns`]).
    last_ack_ns: Option<u64>,
}

enum Side {
    Producer(ProducerSide),
    Consumer(ConsumerSide),
}

/// What every connection's work reads: the run's shape, its queues and its tally.
struct RunContext {
    workload: Workload,
    queues: Vec<String>,
    tally: Arc<Tally>,
    done: DoneSignal,
}

type Consumer = (Connection, ConnectionDriver, Subscription);

/// A connection handed to the thread that drives it, and what it is for.
enum Part {
    Consumer {
        consumer: u32,
        connection: Connection,
        driver: ConnectionDriver,
        deliveries: Subscription,
    },
    Producer {
        producer: u32,
        connection: Connection,
        driver: ConnectionDriver,
    },
}

/// Runs `workload` against `queues` (which must exist and be empty, one per queue of the
/// workload) on the server `target`. Fails if any message is missing when `timeout` runs out,
/// or on any error.
pub fn run(
    target: &Target,
    queues: &[String],
    workload: &Workload,
    timeout: Duration,
    progress: &mut Progress,
) -> Result<Measured, String> {
    assert_eq!(queues.len(), workload.queues as usize, "one name per queue");
    let (consumers, producers) = block_on(connect(target, queues, workload))?;
    let connections: Vec<Connection> = consumers
        .iter()
        .map(|(c, ..)| c)
        .chain(producers.iter().map(|(c, _)| c))
        .cloned()
        .collect();
    let (tally, done) = Tally::new(workload.messages);
    let context = Arc::new(RunContext {
        workload: workload.clone(),
        queues: queues.to_vec(),
        tally: tally.clone(),
        done,
    });

    let (threads, start, start_ns) = start_threads(consumers, producers, &context)?;
    let timed_out = watch(&threads, &tally, &connections, start + timeout, progress)?;
    let sides: Vec<Result<Side, String>> = threads.into_iter().flat_map(join).collect();
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
    assert_eq!(received, workload.messages, "every thread ended well, so every message arrived");
    let sides = sides.into_iter().collect::<Result<Vec<Side>, String>>()?;
    Ok(measured(workload, sides, start_ns, tally.duplicates.load(Ordering::Relaxed)))
}

type Thread = JoinHandle<Vec<Result<Side, String>>>;

/// Hands every connection to its thread (`placement`) and starts the threads; returns them
/// and when the run started, as an `Instant` and on the payload clock: as the first thread
/// with a producer starts, when the consumers already wait.
fn start_threads(
    consumers: Vec<Consumer>,
    producers: Vec<(Connection, ConnectionDriver)>,
    context: &Arc<RunContext>,
) -> Result<(Vec<Thread>, Instant, u64), String> {
    let mut consumers: Vec<Option<Consumer>> = consumers.into_iter().map(Some).collect();
    let mut producers: Vec<Option<_>> = producers.into_iter().map(Some).collect();
    let mut start = None;
    let mut threads = Vec::new();
    let placed = placement::threads(&context.workload, placement::cpus());
    for (at, roles) in placed.into_iter().enumerate() {
        if start.is_none() && roles.iter().any(|role| matches!(role, Role::Producer(_))) {
            start = Some((Instant::now(), payload::now_ns()));
        }
        let parts: Vec<Part> = roles
            .into_iter()
            .map(|role| match role {
                Role::Consumer(j) => {
                    let (connection, driver, deliveries) =
                        consumers[j as usize].take().expect("each consumer placed once");
                    Part::Consumer { consumer: j, connection, driver, deliveries }
                }
                Role::Producer(k) => {
                    let (connection, driver) =
                        producers[k as usize].take().expect("each producer placed once");
                    Part::Producer { producer: k, connection, driver }
                }
            })
            .collect();
        let context = context.clone();
        let thread = std::thread::Builder::new()
            .name(format!("bench-{at}"))
            .spawn(move || drive(parts, &context))
            .map_err(|e| format!("cannot start a bench thread: {e}"))?;
        threads.push(thread);
    }
    let (start, start_ns) = start.expect("a run has a producer");
    Ok((threads, start, start_ns))
}

/// Waits for the threads, drawing progress; on the first failure or at `deadline` closes every
/// connection so that they return. Returns whether the run timed out; fails if the threads do
/// not return after their connections are closed.
fn watch(
    threads: &[Thread],
    tally: &Tally,
    connections: &[Connection],
    deadline: Instant,
    progress: &mut Progress,
) -> Result<bool, String> {
    let started = Instant::now();
    let mut timed_out = false;
    let mut stopped_at = None;
    while !threads.iter().all(JoinHandle::is_finished) {
        match stopped_at {
            None if tally.failure().is_some() || Instant::now() >= deadline => {
                // Closing the connections fails every pending confirm and ends every
                // subscription, so the threads return.
                timed_out = tally.failure().is_none();
                stopped_at = Some(Instant::now());
                for connection in connections {
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
        progress.update(confirmed, tally.distinct.load(Ordering::Relaxed), started.elapsed());
        std::thread::sleep(WATCH_EVERY);
    }
    progress.finish();
    Ok(timed_out)
}

/// The run's figures from what its producers and consumers saw.
fn measured(workload: &Workload, sides: Vec<Side>, start_ns: u64, duplicates: u64) -> Measured {
    let mut measured = Measured {
        seconds: 0.0,
        publish_confirm_us: latency_histogram(),
        e2e_us: latency_histogram(),
        duplicates,
        max_send_lag_us: None,
        fairness_min_over_mean: None,
    };
    let mut queue_end_ns = vec![start_ns; workload.queues as usize];
    for side in sides {
        match side {
            Side::Producer(side) => {
                measured.publish_confirm_us.add(&side.confirm_us).expect("equal bounds");
                measured.max_send_lag_us = measured.max_send_lag_us.max(side.max_send_lag_us);
            }
            Side::Consumer(side) => {
                measured.e2e_us.add(&side.e2e_us).expect("equal bounds");
                let end_ns = &mut queue_end_ns[side.queue as usize];
                *end_ns = (*end_ns).max(side.last_ack_ns.unwrap_or(start_ns));
            }
        }
    }
    let end_ns = queue_end_ns.iter().copied().max().unwrap_or(start_ns);
    measured.seconds = (end_ns - start_ns) as f64 / 1e9;
    if workload.queues > 1 {
        let rates = queue_rates(workload, start_ns, &queue_end_ns);
        measured.fairness_min_over_mean = fairness_min_over_mean(&rates);
    }
    measured
}

/// Each queue's rate in msgs/s: its messages / (the run's first publish → the last ack on
/// that queue), the harness's definition (so a queue that finished early has a high rate).
fn queue_rates(workload: &Workload, start_ns: u64, queue_end_ns: &[u64]) -> Vec<f64> {
    (0..workload.queues)
        .zip(queue_end_ns)
        .map(|(q, end_ns)| {
            let messages = workload.queue_share(q).count() as f64;
            messages / (end_ns.saturating_sub(start_ns) as f64 / 1e9)
        })
        .collect()
}

/// The consumers' connections, each subscribed to its queue, and the producers' connections,
/// each with the driver its thread will poll.
async fn connect(
    target: &Target,
    queues: &[String],
    workload: &Workload,
) -> Result<(Vec<Consumer>, Vec<(Connection, ConnectionDriver)>), String> {
    let options =
        SubscribeOptions { prefetch: PREFETCH, auto_credit: true, lease_ms: None, rate: None };
    let open = || async {
        Connection::connect_driven(&target.url, target.options.clone())
            .await
            .map_err(|e| e.to_string())
    };
    let mut consumers = Vec::new();
    for j in 0..workload.consumers {
        let queue = &queues[workload.queue_of_consumer(j) as usize];
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

/// A thread's work: drives each of its connections and the work done on it until all are
/// done. Only the connections something happened to are polled (`FuturesUnordered`), so a
/// thread with many connections costs no more per event than one with a single connection.
fn drive(parts: Vec<Part>, context: &RunContext) -> Vec<Result<Side, String>> {
    let jobs: FuturesUnordered<_> = parts.into_iter().map(|part| job(part, context)).collect();
    async_io::block_on(jobs.collect())
}

/// One connection's work, driven on its thread. The first error of any connection is the
/// run's: recorded at once, so that the main thread stops the others.
async fn job(part: Part, context: &RunContext) -> Result<Side, String> {
    let workload = &context.workload;
    let result = match part {
        Part::Consumer { consumer, connection, mut driver, deliveries } => {
            let queue = workload.queue_of_consumer(consumer);
            let name = &context.queues[queue as usize];
            let sent_here = workload.queue_share(queue);
            let work =
                consume(connection, deliveries, &context.tally, context.done.clone(), &sent_here);
            driver
                .run_until(work)
                .await
                .map(|(e2e_us, last_ack_ns)| {
                    Side::Consumer(ConsumerSide { queue, e2e_us, last_ack_ns })
                })
                .map_err(|e| format!("consumer of {name}: {e}"))
        }
        Part::Producer { producer, connection, mut driver } => {
            let name = &context.queues[workload.queue_of_producer(producer) as usize];
            let share = workload.producer_share(producer);
            let size_bytes = workload.size_bytes as usize;
            let rate_per_s = workload.producer_rate_per_s();
            let work = produce(connection, name, share, size_bytes, rate_per_s, &context.tally);
            driver.run_until(work).await.map(Side::Producer)
        }
    };
    if let Err(error) = &result {
        context.tally.fail(error.clone());
    }
    result
}

fn join<T>(thread: JoinHandle<T>) -> T {
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
    range: SeqRange,
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
/// each delivery on its own; every one must be of the sequence numbers `sent_here`, those
/// published to this consumer's queue. Returns the end-to-end latencies and when the last ack
/// was handed to the client.
async fn consume(
    connection: Connection,
    mut deliveries: Subscription,
    tally: &Tally,
    mut done: DoneSignal,
    sent_here: &Range<u64>,
) -> Result<(Histogram<u64>, Option<u64>), String> {
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
        tally.check_off(seq, sent_here)?;
        delivery.ack().map_err(|e| format!("ack: {e}"))?;
        last_ack_ns = Some(now_ns);
    }
    // Closing sends the acks still buffered, then waits for the socket to close.
    drop(deliveries);
    connection.close().await;
    Ok((e2e_us, last_ack_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sequence number counts once; the last one ends the run; a repeat is a duplicate;
    /// a number the run never sent is an error.
    #[test]
    fn tally_checks_off_each_message_once() {
        let (tally, mut done) = Tally::new(3);
        let all = 0..3;
        tally.check_off(0, &all).unwrap();
        tally.check_off(2, &all).unwrap();
        tally.check_off(0, &all).unwrap();
        assert!(!tally.is_done());
        assert_eq!(futures::FutureExt::now_or_never(&mut done), None);
        tally.check_off(1, &all).unwrap();
        assert!(tally.is_done());
        assert!(futures::FutureExt::now_or_never(&mut done).is_some());
        assert_eq!(tally.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(tally.distinct.load(Ordering::Relaxed), 3);
        assert!(tally.check_off(3, &all).unwrap_err().contains("never sent"));
    }

    /// A message that arrives on a queue it was not published to fails the run, and is not
    /// counted as arrived.
    #[test]
    fn a_message_on_the_wrong_queue_is_an_error() {
        let (tally, _) = Tally::new(4);
        let error = tally.check_off(3, &(0..2)).unwrap_err();
        assert!(error.contains("published to another queue"), "{error}");
        assert_eq!(tally.distinct.load(Ordering::Relaxed), 0);
        tally.check_off(3, &(2..4)).unwrap();
    }

    /// Confirms take the oldest publishes in flight; a confirm that skips one is an error, not
    /// a miscount.
    #[test]
    fn confirms_take_publishes_in_order() {
        let mut in_flight: VecDeque<(u64, u64)> = (1..=5).map(|seq| (seq, seq * 100)).collect();
        let taken: Vec<u64> =
            take_confirmed(&mut in_flight, SeqRange { first: 1, count: 2 }).unwrap().collect();
        assert_eq!(taken, [100, 200]);
        assert!(take_confirmed(&mut in_flight, SeqRange { first: 4, count: 1 }).is_err());
        assert!(take_confirmed(&mut in_flight, SeqRange { first: 3, count: 4 }).is_err());
        assert_eq!(in_flight.len(), 3, "a refused confirm takes nothing");
    }

    /// A queue's rate runs from the run's start to its own last ack, not to the run's end.
    #[test]
    fn each_queue_rate_runs_to_its_own_last_ack() {
        let w = Workload {
            queues: 2,
            producers: 2,
            consumers: 2,
            messages: 4,
            ..crate::bench::workload::Preset::W1.workload()
        };
        let rates = queue_rates(&w, 1_000, &[1_000 + 1_000_000_000, 1_000 + 2_000_000_000]);
        assert_eq!(rates, [2.0, 1.0]);
        assert_eq!(fairness_min_over_mean(&rates), Some(1.0 / 1.5));
    }

    #[test]
    fn the_first_failure_is_the_one_reported() {
        let (tally, _) = Tally::new(1);
        tally.fail("first".into());
        tally.fail("second".into());
        assert_eq!(tally.failure().as_deref(), Some("first"));
    }
}
