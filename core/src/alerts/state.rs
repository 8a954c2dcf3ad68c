//! One alert's state machine: inactive → pending → firing → resolved.

use serde::Serialize;

use crate::time::Instant;

/// Where an alert stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition does not hold (and the alert has not fired since it last held).
    #[default]
    Inactive,
    /// The condition holds, not yet for the rule's `for_ms`.
    Pending,
    /// The condition has held for `for_ms` and still does.
    Firing,
    /// It fired, and the condition stopped holding.
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One (rule, queue)'s alert.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Alert {
    pub state: AlertState,
    /// When the state was entered, in Unix ms (for operators).
    pub since_unix_ms: u64,
    /// Since when the condition has held without a break.
    pub holding_since: Option<Instant>,
    /// When it last started firing, in Unix ms: an Alertmanager alert's `startsAt`.
    pub fired_unix_ms: Option<u64>,
    /// The rule's value at the last evaluation.
    pub value: Option<u64>,
}

impl Alert {
    /// Feeds one evaluation: whether the condition holds at `now`. Returns the state left, if
    /// the state changed.
    pub fn step(
        &mut self,
        now: Instant,
        now_unix_ms: u64,
        holds: bool,
        for_ms: u64,
    ) -> Option<AlertState> {
        let from = self.state;
        let to = match (from, holds) {
            (AlertState::Inactive | AlertState::Resolved | AlertState::Pending, true) => {
                let since = *self.holding_since.get_or_insert(now);
                match now.saturating_since(since).as_millis() >= u128::from(for_ms) {
                    true => AlertState::Firing,
                    false => AlertState::Pending,
                }
            }
            (AlertState::Firing, true) => AlertState::Firing,
            (AlertState::Pending, false) => AlertState::Inactive,
            (AlertState::Firing, false) => AlertState::Resolved,
            (state @ (AlertState::Inactive | AlertState::Resolved), false) => state,
        };
        if !holds {
            self.holding_since = None;
        }
        if to == from {
            return None;
        }
        self.state = to;
        self.since_unix_ms = now_unix_ms;
        if to == AlertState::Firing {
            self.fired_unix_ms = Some(now_unix_ms);
        }
        Some(from)
    }

    /// The condition can no longer be judged (its queue was deleted, its rule changed): a
    /// firing alert resolves, anything else goes inactive. Returns the state left, if the
    /// state changed.
    pub fn end(&mut self, now_unix_ms: u64) -> Option<AlertState> {
        let from = self.state;
        let to = match from {
            AlertState::Firing | AlertState::Resolved => AlertState::Resolved,
            AlertState::Pending | AlertState::Inactive => AlertState::Inactive,
        };
        self.holding_since = None;
        if to == from {
            return None;
        }
        self.state = to;
        self.since_unix_ms = now_unix_ms;
        Some(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// inactive → pending → firing → resolved, each at the evaluation that causes it.
    #[test]
    fn every_transition_in_order() {
        let mut alert = Alert::default();
        assert_eq!(alert.step(at_ms(0), 1_000, false, 100), None);
        assert_eq!(alert.step(at_ms(10), 1_010, true, 100), Some(AlertState::Inactive));
        assert_eq!(alert.state, AlertState::Pending);
        assert_eq!(alert.step(at_ms(109), 1_109, true, 100), None, "not yet for 100 ms");
        assert_eq!(alert.step(at_ms(110), 1_110, true, 100), Some(AlertState::Pending));
        assert_eq!(
            (alert.state, alert.fired_unix_ms, alert.since_unix_ms),
            (AlertState::Firing, Some(1_110), 1_110)
        );
        assert_eq!(alert.step(at_ms(200), 1_200, true, 100), None);
        assert_eq!(alert.step(at_ms(300), 1_300, false, 100), Some(AlertState::Firing));
        assert_eq!((alert.state, alert.since_unix_ms), (AlertState::Resolved, 1_300));
        assert_eq!(alert.fired_unix_ms, Some(1_110), "startsAt is kept for the notification");
        assert_eq!(alert.step(at_ms(400), 1_400, false, 100), None, "resolved stays resolved");
    }

    /// A pending alert whose condition breaks goes back to inactive and starts over.
    #[test]
    fn pending_goes_back_to_inactive_on_a_break() {
        let mut alert = Alert::default();
        alert.step(at_ms(0), 0, true, 100);
        assert_eq!(alert.step(at_ms(50), 50, false, 100), Some(AlertState::Pending));
        assert_eq!(alert.state, AlertState::Inactive);
        alert.step(at_ms(60), 60, true, 100);
        assert_eq!(alert.step(at_ms(150), 150, true, 100), None, "held 90 ms since the break");
        assert_eq!(alert.step(at_ms(160), 160, true, 100), Some(AlertState::Pending));
    }

    /// `for_ms` 0 fires at the first evaluation the condition holds; a resolved alert fires
    /// again through pending.
    #[test]
    fn zero_for_fires_at_once_and_resolved_can_fire_again() {
        let mut alert = Alert::default();
        assert_eq!(alert.step(at_ms(0), 0, true, 0), Some(AlertState::Inactive));
        assert_eq!(alert.state, AlertState::Firing);
        alert.step(at_ms(10), 10, false, 0);
        assert_eq!(alert.state, AlertState::Resolved);
        assert_eq!(alert.step(at_ms(20), 20, true, 50), Some(AlertState::Resolved));
        assert_eq!(alert.state, AlertState::Pending);
    }

    #[test]
    fn ending_resolves_a_firing_alert_and_clears_a_pending_one() {
        let mut firing = Alert::default();
        firing.step(at_ms(0), 0, true, 0);
        assert_eq!(firing.end(5), Some(AlertState::Firing));
        assert_eq!(firing.state, AlertState::Resolved);
        let mut pending = Alert::default();
        pending.step(at_ms(0), 0, true, 10);
        assert_eq!(pending.end(5), Some(AlertState::Pending));
        assert_eq!(pending.state, AlertState::Inactive);
        assert_eq!(Alert::default().end(5), None);
    }
}
