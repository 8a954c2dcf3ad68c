//! Built-in alert rules: pure and deterministic, like the rest of the core.
//!
//! The driver builds a [`Snapshot`] from the broker's stats and its storage metrics every
//! evaluation interval and hands it, with `now`, to an [`Evaluator`]; the evaluator keeps one
//! [`AlertState`] per (rule, queue) and returns the [`Transition`]s the snapshot caused. The
//! driver logs them, exports them and notifies receivers; nothing here knows how.
//!
//! States follow Prometheus' alerting rules: a condition that starts to hold makes its alert
//! `pending`; once it has held for the rule's `for_ms`, `firing`; when it stops holding, a
//! pending alert goes back to `inactive` and a firing one becomes `resolved`.
//!
//! Files by concern: `rules` (what a rule is, the defaults), `settings` (the configuration's
//! overrides), `snapshot` (what a rule looks at), `history` (the bounded samples rate rules
//! need), `state` (one alert's state machine), `evaluator` (all of them).

mod evaluator;
mod history;
mod rules;
mod settings;
mod snapshot;
mod state;

pub use evaluator::{AlertView, Evaluator, Transition};
pub use history::{CounterHistory, HistogramHistory, HISTORY_SAMPLES_MAX};
pub use rules::{default_rules, Rule, RuleKind, Severity};
pub use settings::{resolve_rules, RuleSetting, RulesError};
pub use snapshot::{QueueSnapshot, Snapshot, SyncLatencyBuckets};
pub use state::AlertState;
