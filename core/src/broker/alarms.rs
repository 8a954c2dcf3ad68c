//! Memory and disk alarms that block publishers only (RabbitMQ's resource alarms). The driver
//! passes a [`ResourceReading`] every `alarms.check_interval_ms`; the thresholds and their
//! hysteresis are in `policy/alarm.rs`.
//!
//! While an alarm is raised, a `Publish` frame read from a connection is held, unhandled, and
//! the connection is not read further until every alarm has cleared: the publish is not
//! accepted, so it is never confirmed while held, and nothing confirmed is at risk. A
//! connection that only consumes, settles or manages queues is never held, so consumers drain
//! the backlog meanwhile. A connection that both publishes and consumes is held at its first
//! publish, and what it sent after that publish (its acks too) waits with it, since frames
//! are handled in order (PROTOCOL.md §5.9).
//!
//! The rest of a batch that already waits for a `pause` rate limit when an alarm is raised was
//! read before it, and is published as its tokens come.
//!
//! Version-2 clients that publish are told: `Blocked` when the alarm is raised (for those that
//! have published before) or when a publish of theirs is held, and `Unblocked` when it clears.

use chute_protocol::{Blocked, FrameKind, Publish, Unblocked};

use super::connection::PauseReason;
use super::Broker;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::policy::alarm::{disk_alarm, memory_alarm, Resource, ResourceReading};

/// The alarms' state: which are raised, after which reading.
#[derive(Debug, Default)]
pub(super) struct Alarms {
    memory: bool,
    disk: bool,
    /// The last reading, kept so that a reload with new thresholds is judged at once.
    last_reading: Option<ResourceReading>,
}

impl Alarms {
    pub fn is_raised(&self, resource: Resource) -> bool {
        match resource {
            Resource::Memory => self.memory,
            Resource::Disk => self.disk,
        }
    }

    pub fn any(&self) -> bool {
        self.memory || self.disk
    }

    /// What `Blocked.reason` says: the raised alarms' names.
    fn reason(&self) -> String {
        let raised: Vec<&str> =
            Resource::ALL.iter().filter(|r| self.is_raised(**r)).map(|r| r.label()).collect();
        raised.join(",")
    }
}

impl Broker {
    /// Whether the alarm on `resource` is raised.
    pub fn alarm_raised(&self, resource: Resource) -> bool {
        self.alarms.is_raised(resource)
    }

    /// Whether a publish read now is held.
    pub(super) fn holds_publishes(&self) -> bool {
        // MUTANT publish-during-alarm: publishes are handled whatever the alarms say.
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::PublishDuringAlarm) {
            return false;
        }
        self.alarms.any()
    }

    pub(super) fn handle_resources(&mut self, reading: ResourceReading) {
        self.alarms.last_reading = Some(reading);
        self.evaluate_alarms();
    }

    /// Judges the last reading against the thresholds: after a reading, and after a reload.
    pub(super) fn evaluate_alarms(&mut self) {
        let Some(reading) = self.alarms.last_reading else { return };
        let config = &self.config.alarms;
        let memory_high_bytes = config.memory_high_bytes(reading.memory_total_bytes);
        let disk_low_bytes = config.disk_free_low_bytes(self.config.storage.segment_bytes_max);
        let was_raised = self.alarms.any();
        let memory = memory_alarm(self.alarms.memory, reading.rss_bytes, memory_high_bytes);
        let disk = disk_alarm(self.alarms.disk, reading.disk_free_bytes, disk_low_bytes);
        let changes = [
            (Resource::Memory, self.alarms.memory, memory, reading.rss_bytes, memory_high_bytes),
            (Resource::Disk, self.alarms.disk, disk, reading.disk_free_bytes, Some(disk_low_bytes)),
        ];
        (self.alarms.memory, self.alarms.disk) = (memory, disk);
        for (resource, was, is, reading_bytes, threshold_bytes) in changes {
            if was == is {
                continue;
            }
            let threshold_bytes = threshold_bytes.unwrap_or(u64::MAX);
            let event = if is {
                Event::AlarmRaised { resource, reading_bytes, threshold_bytes }
            } else {
                Event::AlarmCleared { resource, reading_bytes, threshold_bytes }
            };
            self.outputs.push_back(Output::Event(event));
        }
        match (was_raised, self.alarms.any()) {
            (false, true) => self.tell_publishers_blocked(),
            (true, false) => self.release_publishers(),
            _ => {}
        }
    }

    /// An alarm was raised: tells every connection that has published so far.
    fn tell_publishers_blocked(&mut self) {
        let publishers: Vec<ConnId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.is_open() && c.published_total > 0)
            .map(|(id, _)| *id)
            .collect();
        for conn in publishers {
            self.tell_blocked(conn);
        }
    }

    /// Tells a version-2 client it is blocked, once per alarm.
    fn tell_blocked(&mut self, conn: ConnId) {
        let reason = self.alarms.reason();
        let connection = self.connection_mut(conn);
        if connection.version < 2 || connection.told_blocked {
            return;
        }
        connection.told_blocked = true;
        connection.send(FrameKind::Blocked, &Blocked { reason }).expect("a short Blocked fits");
        self.mark_dirty(conn);
    }

    /// A `Publish` read while an alarm is raised: held unhandled, and the connection not read
    /// until the alarms clear.
    pub(super) fn hold_publish(&mut self, conn: ConnId, publish: Publish) {
        assert!(self.alarms.any(), "{conn}: a publish held with no alarm raised");
        let connection = self.connection_mut(conn);
        assert!(connection.held_publish.is_none(), "{conn}: read on past a held publish");
        connection.held_publish = Some(publish);
        self.set_read_pause(conn, PauseReason::Alarm, true);
        self.tell_blocked(conn);
    }

    /// Every alarm cleared: `Unblocked` to those told `Blocked`, then each held publish is
    /// handled and its connection read again. During a stop, held publishes stay held: the
    /// connections are closing, and a publish accepted now would only delay the stop.
    fn release_publishers(&mut self) {
        let conns: Vec<ConnId> = self.connections.keys().copied().collect();
        for conn in conns {
            let Some(connection) = self.connections.get_mut(&conn) else { continue };
            if connection.told_blocked {
                connection.told_blocked = false;
                connection.send(FrameKind::Unblocked, &Unblocked).expect("Unblocked is empty");
                self.mark_dirty(conn);
            }
            if self.shutting_down {
                continue;
            }
            let Some(publish) = self.connection_mut(conn).held_publish.take() else { continue };
            self.set_read_pause(conn, PauseReason::Alarm, false);
            self.handle_publish(conn, publish);
            self.process_received(conn);
        }
    }

    /// Connections holding a publish for an alarm.
    pub(super) fn blocked_connection_count(&self) -> u64 {
        self.connections.values().filter(|c| c.held_publish.is_some()).count() as u64
    }
}
