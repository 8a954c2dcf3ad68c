//! Which queues have a dedup window, so that generated message ids go only where they serve.
//!
//! An id lets a queue's dedup window recognise a message sent again after an unknown outcome;
//! on a queue without a window it does nothing, yet costs every message an allocation and
//! some thirty bytes on the client, on the wire, in the broker and in its log (a third of the
//! in-memory publish rate). So the session gives ids to messages for queues with a window, and
//! to those it knows nothing of yet, while a passive declaration (a "probe", one per queue)
//! finds out. Topics fan out to queues it cannot see: their messages always get ids.

use std::collections::BTreeMap;

use chute_protocol::Destination;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// Whether the queue has a dedup window.
    Window(bool),
    /// A probe is on its way.
    Probing,
}

#[derive(Debug, Default)]
pub struct DedupWindows {
    queues: BTreeMap<String, Known>,
}

/// Whether a message without an id gets one, and whether to probe its queue first.
#[derive(Debug, PartialEq, Eq)]
pub struct IdDecision {
    pub generate: bool,
    /// Ask the server about this queue (a passive declaration).
    pub probe: Option<String>,
}

impl DedupWindows {
    /// `can_probe`: a connection is open to ask on.
    pub fn decide(&mut self, destination: &Destination, can_probe: bool) -> IdDecision {
        let Destination::Queue(name) = destination else {
            return IdDecision { generate: true, probe: None };
        };
        match self.queues.get(name) {
            Some(Known::Window(window)) => IdDecision { generate: *window, probe: None },
            Some(Known::Probing) => IdDecision { generate: true, probe: None },
            None if can_probe => {
                self.queues.insert(name.clone(), Known::Probing);
                IdDecision { generate: true, probe: Some(name.clone()) }
            }
            None => IdDecision { generate: true, probe: None },
        }
    }

    /// What a declaration (the application's or a probe) answered about `queue`.
    pub fn learn(&mut self, queue: &str, window: bool) {
        self.queues.insert(queue.to_string(), Known::Window(window));
    }

    /// The connection is gone, and probes on it with it. (What was learned stays: an operator
    /// who adds a window to a queue later is heard of by a new session.)
    pub fn connection_lost(&mut self) {
        self.queues.retain(|_, known| *known != Known::Probing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str) -> Destination {
        Destination::Queue(name.into())
    }

    /// Unknown: an id, and one probe; known: ids only with a window; topics: always.
    #[test]
    fn ids_go_where_a_window_may_be() {
        let mut windows = DedupWindows::default();
        let first = windows.decide(&queue("q"), true);
        assert_eq!(first, IdDecision { generate: true, probe: Some("q".into()) });
        assert_eq!(windows.decide(&queue("q"), true), IdDecision { generate: true, probe: None });
        windows.learn("q", false);
        assert_eq!(windows.decide(&queue("q"), true), IdDecision { generate: false, probe: None });
        windows.learn("d", true);
        assert_eq!(windows.decide(&queue("d"), true), IdDecision { generate: true, probe: None });
        let topic = Destination::Topic("a.b".into());
        assert_eq!(windows.decide(&topic, true), IdDecision { generate: true, probe: None });
        assert_eq!(windows.decide(&queue("x"), false), IdDecision { generate: true, probe: None });
    }

    /// A probe lost with its connection is asked again on the next one.
    #[test]
    fn a_lost_probe_is_asked_again() {
        let mut windows = DedupWindows::default();
        windows.decide(&queue("q"), true);
        windows.connection_lost();
        assert_eq!(windows.decide(&queue("q"), true).probe, Some("q".into()));
    }
}
