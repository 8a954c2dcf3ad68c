//! Crash recovery: SIGKILL a busy server at random moments, start it again on the same data
//! directory, and compare what the log kept with what the clients were told. Every test runs
//! against both `chuted` (tokio) and `chuted-smol`.
//!
//! A process crash keeps what the server handed to the kernel (the page cache survives it), so
//! these tests check the broker's own ordering: a confirm leaves only after its record is
//! written, acks are logged, a torn tail is cut, compaction copies a message forward before it
//! deletes the segment it came from. A power cut, which would test the fsyncs too, is out of
//! reach of a black-box test.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chute_client::{Confirmation, ConnectOptions, Connection, PublishError, QueueOptions};
use chute_core::storage::format::{parse_segment_file_name, scan_segment};
use chute_core::storage::records::{Published, Record};
use chute_tests::{id_of, labelled_payload, take_ready, within, Server, ServerBinary};
use futures::executor::block_on;
use futures::{FutureExt, StreamExt};

const ROUNDS: u64 = 20;
/// The smallest segment the broker accepts. With the payloads below the active segment fills
/// every hundred-odd messages, so segments roll, and the oldest is compacted, many times a
/// round.
const SEGMENT_BYTES_MAX: &str = "65536";
const PAYLOAD_BYTES: usize = 400;
/// Consumed at full speed while the publishers fill it.
const WORK: &str = "crash-work";
/// Published to but not consumed while a round runs: these messages keep old segments partly
/// live, so compaction copies them forward rather than deleting whole dead segments.
const KEEP: &str = "crash-keep";
/// Every this many messages, publisher 1 publishes to `KEEP` instead of `WORK`.
const KEEP_EVERY: u64 = 8;
/// The consumer's sync barriers; see `consume_until_killed`.
const MARKS: &str = "crash-marks";
const MARK_EVERY_ACKS: usize = 32;
const MARKS_IN_FLIGHT_MAX: usize = 4;
const PREFETCH: u32 = 200;
/// Unconfirmed publishes per publisher. Far below the broker's window, so the log does not run
/// far ahead of the syncs: most of what a round publishes is confirmed (and checked), and the
/// consumer is not starved.
const PUBLISH_WINDOW: usize = 256;
/// A bound, should a kill never come: each publisher stops after this many messages.
const PUBLISHER_MESSAGES_MAX: u64 = 500_000;
const KILL_DELAY_MS_MIN: u64 = 20;
const KILL_DELAY_MS_MAX: u64 = 400;
/// Generous: two tests like this one share two cores with the rest of the suite.
const CLIENTS_TIMEOUT: Duration = Duration::from_secs(30);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Twenty times: two publishers (with confirms) and an acking consumer run at full speed, the
/// server is SIGKILLed after a random 20–400 ms, and restarted on the same data directory,
/// with segments small enough that kills land while segments roll and are compacted. After
/// each restart the queues are drained and compared with what the clients were told:
/// - every confirmed message that was not acked is there (nothing lost);
/// - everything there was published in that round (nothing invented, nothing drained in an
///   earlier round comes back);
/// - an acked message comes back only if its ack may not have reached the disk before the kill
///   (a duplicate); if a later sync barrier on the consumer's connection was confirmed, it must
///   not (that would be an ack lost after it was made durable);
/// - no message is there twice, and none is delivered twice while a server lives.
fn sigkill_loses_no_confirmed_message(binary: ServerBinary) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let args = ["--segment-bytes-max", SEGMENT_BYTES_MAX];
    let mut totals = Totals::default();
    let mut killed: Option<Round> = None;
    for round in 0..=ROUNDS {
        let mut server = Server::start_in(binary, &data_dir, &args);
        let url = server.url();
        let present =
            within("draining the recovered queues", DRAIN_TIMEOUT, move || block_on(drain(&url)));
        match killed.take() {
            None => assert!(present.is_empty(), "a fresh data directory holds {present:?}"),
            Some(round) => {
                let outcome = round.check(&present);
                println!("{} {}", binary.name(), round.describe(&outcome));
                outcome.assert_sound(&round, &server);
                totals.add(&round, &outcome);
            }
        }
        if round == ROUNDS {
            let status = server.stop();
            assert!(status.success(), "graceful stop after the last round: {status:?}");
            break;
        }
        killed = Some(run_until_killed(&mut server, round, &data_dir));
    }
    println!("{} totals over {ROUNDS} kills: {}", binary.name(), totals.describe());
    println!("{} took {:?}", binary.name(), started.elapsed());
    assert!(
        totals.rounds_with_rolled_segments > ROUNDS / 2,
        "segments rolled in only {} of {ROUNDS} rounds: the workload no longer exercises \
         segment rotation and compaction",
        totals.rounds_with_rolled_segments
    );
    // A kill lands between a compaction's copies and the deletion of the segment they came
    // from in about a third of the rounds; never in twenty would mean compaction stopped.
    assert!(
        totals.rounds_mid_compaction > 0,
        "no kill landed in the middle of a compaction: the workload no longer exercises it"
    );
}

#[test]
fn sigkill_loses_no_confirmed_message_tokio() {
    sigkill_loses_no_confirmed_message(ServerBinary::Tokio);
}

#[test]
fn sigkill_loses_no_confirmed_message_smol() {
    sigkill_loses_no_confirmed_message(ServerBinary::Smol);
}

// ---- one round ----

/// What the clients were told in one round, up to the kill.
struct Round {
    number: u64,
    kill_after_ms: u64,
    published: HashSet<String>,
    confirmed: HashSet<String>,
    /// Acked before the consumer's last confirmed sync barrier: on disk at the kill.
    acked_durable: HashSet<String>,
    /// Acked after it: the ack may or may not have reached the log.
    acked_unsure: HashSet<String>,
    /// What the kill left on disk.
    log: LogAtKill,
}

/// Starts the clients, kills the server after a random delay, and gathers what the clients
/// saw. Checks what needs no restart: the consumer saw only published messages, each once.
fn run_until_killed(server: &mut Server, round: u64, data_dir: &Path) -> Round {
    let kill_after_ms = Rng::seeded(round).between(KILL_DELAY_MS_MIN, KILL_DELAY_MS_MAX);
    let url = server.url();
    let publishers: Vec<_> = (0..2u64)
        .map(|publisher| {
            let url = url.clone();
            std::thread::spawn(move || block_on(publish_until_killed(&url, publisher)))
        })
        .collect();
    let consumer = std::thread::spawn(move || block_on(consume_until_killed(&url)));
    std::thread::sleep(Duration::from_millis(kill_after_ms));
    server.kill();
    let (published, consumed) = within("the clients, after the kill", CLIENTS_TIMEOUT, move || {
        let published: Vec<PublisherRecord> =
            publishers.into_iter().map(|p| p.join().expect("publisher")).collect();
        (published, consumer.join().expect("consumer"))
    });

    let mut round = Round {
        number: round,
        kill_after_ms,
        published: HashSet::new(),
        confirmed: HashSet::new(),
        acked_durable: HashSet::new(),
        acked_unsure: HashSet::new(),
        log: LogAtKill::inspect(data_dir),
    };
    for publisher in published {
        assert!(
            publisher.refused.is_empty(),
            "round {}: the server refused publishes (not a crash): {:?}",
            round.number,
            publisher.refused
        );
        round.published.extend(publisher.published);
        round.confirmed.extend(publisher.confirmed);
    }
    let mut delivered = HashSet::new();
    for id in &consumed.delivered {
        assert!(
            round.published.contains(id),
            "round {}: delivered {id}, never published",
            round.number
        );
        assert!(delivered.insert(id), "round {}: {id} delivered twice by one server", round.number);
    }
    let (durable, unsure) = consumed.acked.split_at(consumed.acks_durable);
    round.acked_durable.extend(durable.iter().cloned());
    round.acked_unsure.extend(unsure.iter().cloned());
    round
}

/// What the queues held after the restart, measured against the round.
struct Outcome {
    recovered: usize,
    /// Confirmed, never acked, and not there.
    lost: Vec<String>,
    /// There, but not published in this round.
    invented: Vec<String>,
    /// There, though acked before a sync barrier that was confirmed.
    resurrected: Vec<String>,
    /// There more than once.
    twice: Vec<String>,
    /// There, acked after the last confirmed barrier: the ack did not make it. Allowed.
    duplicates: usize,
    /// There, published but never confirmed: the kill beat the confirm. Allowed.
    unconfirmed_kept: usize,
}

impl Round {
    fn check(&self, present: &[String]) -> Outcome {
        let mut seen = HashSet::new();
        let mut twice = Vec::new();
        for id in present {
            if !seen.insert(id.clone()) {
                twice.push(id.clone());
            }
        }
        let mut lost: Vec<String> = self
            .confirmed
            .iter()
            .filter(|id| !self.acked_durable.contains(*id) && !self.acked_unsure.contains(*id))
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        lost.sort();
        let mut invented: Vec<String> =
            seen.iter().filter(|id| !self.published.contains(*id)).cloned().collect();
        invented.sort();
        let mut resurrected: Vec<String> =
            seen.iter().filter(|id| self.acked_durable.contains(*id)).cloned().collect();
        resurrected.sort();
        Outcome {
            recovered: present.len(),
            lost,
            invented,
            resurrected,
            twice,
            duplicates: seen.iter().filter(|id| self.acked_unsure.contains(*id)).count(),
            unconfirmed_kept: seen
                .iter()
                .filter(|id| self.published.contains(*id) && !self.confirmed.contains(*id))
                .count(),
        }
    }

    fn describe(&self, outcome: &Outcome) -> String {
        format!(
            "round {:2}: kill after {:3} ms; published {:5}, confirmed {:5}, acked {:5} ({:3} \
             unsure); recovered {:4} ({:3} unconfirmed), lost {}, invented {}, resurrected {}, \
             duplicates {:3}; at the kill {} segments, {} mid-compaction copies",
            self.number,
            self.kill_after_ms,
            self.published.len(),
            self.confirmed.len(),
            self.acked_durable.len() + self.acked_unsure.len(),
            self.acked_unsure.len(),
            outcome.recovered,
            outcome.unconfirmed_kept,
            outcome.lost.len(),
            outcome.invented.len(),
            outcome.resurrected.len(),
            outcome.duplicates,
            self.log.segments,
            self.log.copies_pending_delete,
        )
    }
}

impl Outcome {
    fn assert_sound(&self, round: &Round, server: &Server) {
        let sample = |ids: &[String]| ids.iter().take(10).cloned().collect::<Vec<_>>();
        let problems = [
            ("confirmed messages lost", sample(&self.lost), self.lost.len()),
            ("messages never published", sample(&self.invented), self.invented.len()),
            ("durably acked messages back", sample(&self.resurrected), self.resurrected.len()),
            ("messages present twice", sample(&self.twice), self.twice.len()),
        ];
        let report: Vec<String> = problems
            .iter()
            .filter(|(_, _, count)| *count > 0)
            .map(|(what, ids, count)| format!("{count} {what}, e.g. {ids:?}"))
            .collect();
        assert!(
            report.is_empty(),
            "round {} (kill after {} ms): {}\nlog of the restarted server:\n{}",
            round.number,
            round.kill_after_ms,
            report.join("; "),
            server.log()
        );
    }
}

#[derive(Default)]
struct Totals {
    published: usize,
    confirmed: usize,
    acked: usize,
    recovered: usize,
    lost: usize,
    invented: usize,
    duplicates: usize,
    rounds_with_rolled_segments: u64,
    rounds_mid_compaction: u64,
}

impl Totals {
    fn add(&mut self, round: &Round, outcome: &Outcome) {
        self.published += round.published.len();
        self.confirmed += round.confirmed.len();
        self.acked += round.acked_durable.len() + round.acked_unsure.len();
        self.recovered += outcome.recovered;
        self.lost += outcome.lost.len();
        self.invented += outcome.invented.len() + outcome.resurrected.len();
        self.duplicates += outcome.duplicates;
        self.rounds_with_rolled_segments += u64::from(round.log.segments > 1);
        self.rounds_mid_compaction += u64::from(round.log.copies_pending_delete > 0);
    }

    fn describe(&self) -> String {
        format!(
            "published {}, confirmed {}, acked {}, recovered {}, lost {}, invented {}, \
             duplicates {}; kills with more than one segment on disk {}, kills mid-compaction {}",
            self.published,
            self.confirmed,
            self.acked,
            self.recovered,
            self.lost,
            self.invented,
            self.duplicates,
            self.rounds_with_rolled_segments,
            self.rounds_mid_compaction,
        )
    }
}

// ---- clients ----

#[derive(Default)]
struct PublisherRecord {
    published: Vec<String>,
    confirmed: Vec<String>,
    refused: Vec<(String, PublishError)>,
}

/// Publishes as fast as the confirm window allows until the server dies. Ids are
/// `p{publisher}-{n}` on `WORK` and `k{publisher}-{n}` on `KEEP`.
async fn publish_until_killed(url: &str, publisher: u64) -> PublisherRecord {
    let mut record = PublisherRecord::default();
    // These clients must see the kill, not ride it out.
    let options = ConnectOptions::without_reconnect();
    let Ok(connection) = Connection::connect_with(url, options).await else { return record };
    let mut pending: VecDeque<(String, Confirmation)> = VecDeque::new();
    for n in 0..PUBLISHER_MESSAGES_MAX {
        let (queue, id) = if publisher == 1 && n % KEEP_EVERY == 0 {
            (KEEP, format!("k{publisher}-{n}"))
        } else {
            (WORK, format!("p{publisher}-{n}"))
        };
        let Ok(confirmation) =
            connection.publish(queue, labelled_payload(&id, PAYLOAD_BYTES)).await
        else {
            break;
        };
        record.published.push(id.clone());
        pending.push_back((id, confirmation));
        // Settle what is answered; past the window, wait for the oldest confirm.
        loop {
            let window_full = pending.len() > PUBLISH_WINDOW;
            let Some((_, confirmation)) = pending.front_mut() else { break };
            let result = if window_full {
                confirmation.await
            } else {
                let Some(result) = confirmation.now_or_never() else { break };
                result
            };
            let (id, _) = pending.pop_front().expect("front");
            record.settle(id, result);
        }
    }
    // The connection is closed: confirms that arrived before the kill are in already.
    for (id, confirmation) in pending {
        let result = confirmation.await;
        record.settle(id, result);
    }
    record
}

impl PublisherRecord {
    fn settle(&mut self, id: String, result: Result<(), PublishError>) {
        match result {
            Ok(()) => self.confirmed.push(id),
            Err(PublishError::Unconfirmed { .. } | PublishError::ConnectionLost { .. }) => {}
            Err(error) => self.refused.push((id, error)),
        }
    }
}

#[derive(Default)]
struct Consumed {
    delivered: Vec<String>,
    /// In the order of the `ack` calls.
    acked: Vec<String>,
    /// `acked[..acks_durable]` are known to be on disk.
    acks_durable: usize,
}

/// Takes and acks `WORK` messages as fast as they come until the server dies.
///
/// Which acks reached the log? Every `MARK_EVERY_ACKS` acks the consumer publishes a marker on
/// its own connection. The broker handles one connection's frames in order and the log is
/// sequential, so the sync that confirms the marker covers the `Acked` records of every ack
/// sent before it: those acks are durable, and their messages must never come back. Acks
/// after the last confirmed marker may be lost with the kill.
async fn consume_until_killed(url: &str) -> Consumed {
    let mut record = Consumed::default();
    // These clients must see the kill, not ride it out.
    let options = ConnectOptions::without_reconnect();
    let Ok(connection) = Connection::connect_with(url, options).await else { return record };
    let Ok(mut deliveries) = connection.subscribe(WORK, PREFETCH).await else { return record };
    let mut marks: VecDeque<(usize, Confirmation)> = VecDeque::new();
    while let Some(delivery) = deliveries.next().await {
        let id = id_of(delivery.payload());
        record.delivered.push(id.clone());
        if delivery.ack().is_err() {
            break;
        }
        record.acked.push(id);
        while let Some((_, mark)) = marks.front_mut() {
            let Some(result) = mark.now_or_never() else { break };
            let (acks_before, _) = marks.pop_front().expect("front");
            if result.is_ok() {
                record.acks_durable = acks_before;
            }
        }
        if record.acked.len() % MARK_EVERY_ACKS == 0 && marks.len() < MARKS_IN_FLIGHT_MAX {
            let Ok(mark) = connection.publish(MARKS, "mark").await else { break };
            marks.push_back((record.acked.len(), mark));
        }
    }
    // The connection is closed: a marker confirmed before the kill has its answer already.
    for (acks_before, mark) in marks {
        if let Some(Ok(())) = mark.now_or_never() {
            record.acks_durable = record.acks_durable.max(acks_before);
        }
    }
    record
}

/// Declares the queues (a no-op once they exist), takes every message the recovered broker
/// holds in `WORK` and `KEEP`, acks each, and returns their ids. The confirmed marker at the end
/// makes the acks durable before the next round starts: nothing drained now may come back.
async fn drain(url: &str) -> Vec<String> {
    let connection = Connection::connect(url).await.expect("connect after the restart");
    for queue in [WORK, KEEP, MARKS] {
        connection.declare_queue(queue, QueueOptions::default()).await.expect("declare");
    }
    connection.purge_queue(MARKS).await.expect("purge the markers");
    let mut present = Vec::new();
    for queue in [WORK, KEEP] {
        let stats = connection.queue_stats(queue).await.expect("stats");
        assert_eq!(stats.in_flight, 0, "{queue}: in flight right after recovery");
        present.extend(take_ready(&connection, queue, stats.ready).await);
    }
    connection.publish(MARKS, "drained").await.expect("publish").await.expect("confirmed");
    for queue in [WORK, KEEP] {
        let stats = connection.queue_stats(queue).await.expect("stats");
        assert_eq!((stats.ready, stats.in_flight), (0, 0), "{queue} after the drain");
    }
    connection.close().await;
    present
}

// ---- the log on disk ----

/// What a kill left in the data directory.
struct LogAtKill {
    segments: usize,
    /// Messages with a `Published` record in more than one place: compaction had copied them
    /// forward and not yet deleted the segment they came from. Nonzero means the kill landed
    /// in the middle of a compaction.
    copies_pending_delete: usize,
}

impl LogAtKill {
    /// Reads the segment files as the broker's recovery would, but never fails: judging the
    /// log is recovery's job, this only counts.
    fn inspect(data_dir: &Path) -> LogAtKill {
        let mut names: Vec<String> = std::fs::read_dir(data_dir)
            .expect("data directory")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| parse_segment_file_name(name).is_some())
            .collect();
        names.sort();
        let mut published: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        for (index, name) in names.iter().enumerate() {
            let Ok(bytes) = std::fs::read(data_dir.join(name)) else { continue };
            let Ok(scan) = scan_segment(&Bytes::from(bytes), index + 1 == names.len()) else {
                continue;
            };
            for raw in scan.records {
                if let Ok(Record::Published(Published { queue, message })) =
                    Record::decode(raw.kind, &raw.body)
                {
                    *published.entry((queue, message.seq)).or_default() += 1;
                }
            }
        }
        LogAtKill {
            segments: names.len(),
            copies_pending_delete: published.values().filter(|&&count| count > 1).count(),
        }
    }
}

// ---- randomness ----

/// xorshift64*, seeded from the round number: kill times vary from round to round but are the
/// same on every run.
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng((seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `min..=max`.
    fn between(&mut self, min: u64, max: u64) -> u64 {
        min + self.next() % (max - min + 1)
    }
}
