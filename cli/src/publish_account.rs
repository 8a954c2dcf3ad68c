//! What became of the messages one `chute publish` sent: how many the server confirmed, and
//! which it (or the client, before sending) refused and why, by line of stdin or by number.
//! A partial failure names every refused message, so a retry can resend just those instead of
//! duplicating the ones already stored. Topic publishes that matched no binding are counted
//! as routed to no queue (an error only with `--mandatory`).

use chute_client::{ErrorCode, PublishError};
use indicatif::ProgressBar;

use crate::render::messages;

/// The messages of one run, numbered from 1 in the order they were read.
pub struct Account {
    /// What a message is called in the account: `line` (stdin) or `message`.
    unit: &'static str,
    /// Where they went: a queue name, or `topic NAME`.
    target: String,
    confirmed: u64,
    refused: u64,
    /// Topic publishes that matched no binding, when that is no error.
    unroutable: u64,
    /// Whether matching no binding is an error (`--mandatory`) rather than a drop.
    unroutable_is_error: bool,
    /// Refusals in message order, consecutive messages refused for the same reason together.
    refusals: Vec<Refusal>,
    /// Advanced by every outcome, cleared before the account is printed.
    pub progress: Option<ProgressBar>,
}

/// Messages `first..=last`, all refused for `reason`.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    first: u64,
    last: u64,
    reason: String,
}

impl Account {
    pub fn new(unit: &'static str, target: String, unroutable_is_error: bool) -> Account {
        Account {
            unit,
            target,
            confirmed: 0,
            refused: 0,
            unroutable: 0,
            unroutable_is_error,
            refusals: Vec::new(),
            progress: None,
        }
    }

    pub fn confirm(&mut self) {
        self.confirmed += 1;
        self.advance();
    }

    fn advance(&self) {
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
    }

    /// Message `number` was refused: by the server (`Refused`) or by the client before sending
    /// (`Command`: too large for a frame, an invalid attribute). `unroutable` is no refusal
    /// unless matching no binding is an error.
    pub fn refuse(&mut self, number: u64, error: &PublishError) {
        self.advance();
        let unroutable =
            matches!(error, PublishError::Refused { code, .. } if *code == ErrorCode::UNROUTABLE);
        if unroutable && !self.unroutable_is_error {
            self.unroutable += 1;
            return;
        }
        let reason = match error {
            PublishError::Refused { code, message, .. } => format!(" ({code}): {message}"),
            other => format!(": {other}"),
        };
        self.refused += 1;
        match self.refusals.last_mut() {
            Some(run) if run.last + 1 == number && run.reason == reason => run.last = number,
            _ => self.refusals.push(Refusal { first: number, last: number, reason }),
        }
    }

    /// `Ok` with the success line when no message was refused; otherwise `Err` with the lines
    /// of the account, the summary last.
    pub fn outcome(&mut self) -> Result<String, Vec<String>> {
        self.clear_progress();
        let Self { target, confirmed, refused, unroutable, .. } = &*self;
        let (confirmed, refused, unroutable) = (*confirmed, *refused, *unroutable);
        let total = confirmed + refused + unroutable;
        let published = format!("published {}", messages(total));
        if refused == 0 {
            return Ok(match (confirmed, unroutable) {
                (1, 0) => format!("{published} to {target} (confirmed)"),
                (_, 0) => format!("{published} to {target} (all confirmed)"),
                (0, _) => format!(
                    "{published} to {target}: routed to no queue (no binding matches; with \
                     --mandatory that is an error)"
                ),
                (_, _) => {
                    format!("{published} to {target}: {confirmed} confirmed, {unroutable} routed to no queue")
                }
            });
        }
        if let ([only], 0, 0) = (&self.refusals[..], confirmed, unroutable) {
            return Err(vec![format!("publish to {target} failed: {}", self.describe(only))]);
        }
        let unroutable = match unroutable {
            0 => String::new(),
            n => format!(", {n} routed to no queue"),
        };
        let summary = format!(
            "{published} to {target}: {confirmed} confirmed{unroutable}, {refused} refused ({})",
            self.refused_numbers()
        );
        Err(self.refusal_lines().chain([summary]).collect())
    }

    /// The account of a run cut short at message `number` by `error` (the connection ended):
    /// what is known, and that the rest may or may not be stored.
    pub fn stopped(&mut self, number: u64, error: &PublishError) -> Vec<String> {
        self.clear_progress();
        let Self { unit, target, confirmed, refused, .. } = &*self;
        let summary = format!(
            "publishing to {target} stopped at {unit} {number}: {error}; before it {confirmed} \
             confirmed, {refused} refused, the rest may or may not be stored"
        );
        self.refusal_lines().chain([summary]).collect()
    }

    fn clear_progress(&mut self) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
    }

    fn refusal_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.refusals.iter().map(|run| self.describe(run))
    }

    fn describe(&self, run: &Refusal) -> String {
        let plural = if run.first == run.last { "" } else { "s" };
        format!("{}{plural} {} refused{}", self.unit, run.numbers(), run.reason)
    }

    /// `lines 2-3, 5, 6`
    fn refused_numbers(&self) -> String {
        let numbers: Vec<String> = self.refusals.iter().map(Refusal::numbers).collect();
        let plural = if self.refused == 1 { "" } else { "s" };
        format!("{}{plural} {}", self.unit, numbers.join(", "))
    }
}

impl Refusal {
    fn numbers(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}-{}", self.first, self.last)
        }
    }
}

#[cfg(test)]
mod tests {
    use chute_client::{CommandError, ErrorCode};

    use super::*;

    fn too_large() -> PublishError {
        PublishError::Refused {
            code: ErrorCode::MESSAGE_TOO_LARGE,
            message: "payload of 9 bytes exceeds 8".into(),
            retry_after_ms: 0,
        }
    }

    #[test]
    fn all_confirmed() {
        let mut account = Account::new("line", "jobs".into(), true);
        account.confirm();
        account.confirm();
        assert_eq!(account.outcome(), Ok("published 2 messages to jobs (all confirmed)".into()));
    }

    /// One is one message, not "1 messages".
    #[test]
    fn one_message_is_singular() {
        let mut account = Account::new("message", "jobs".into(), true);
        account.confirm();
        assert_eq!(account.outcome(), Ok("published 1 message to jobs (confirmed)".into()));
    }

    fn unroutable() -> PublishError {
        PublishError::Refused {
            code: ErrorCode::UNROUTABLE,
            message: "no binding matches".into(),
            retry_after_ms: 0,
        }
    }

    /// A topic publish that matched no binding went nowhere: the account says so instead of
    /// "confirmed", and it is no error without --mandatory.
    #[test]
    fn routed_to_no_queue_is_said() {
        let mut account = Account::new("message", "topic t".into(), false);
        account.refuse(1, &unroutable());
        assert_eq!(
            account.outcome(),
            Ok("published 1 message to topic t: routed to no queue (no binding matches; with \
                --mandatory that is an error)"
                .into())
        );
        let mut mixed = Account::new("line", "topic t".into(), false);
        mixed.confirm();
        mixed.refuse(2, &unroutable());
        assert_eq!(
            mixed.outcome(),
            Ok("published 2 messages to topic t: 1 confirmed, 1 routed to no queue".into())
        );
        let mut mandatory = Account::new("message", "topic t".into(), true);
        mandatory.refuse(1, &unroutable());
        assert_eq!(
            mandatory.outcome(),
            Err(vec!["publish to topic t failed: message 1 refused (unroutable(32)): no binding \
                      matches"
                .to_string()])
        );
    }

    /// A run cut short says where, what was known by then, and that the rest is unknown.
    #[test]
    fn stopped_says_what_is_known() {
        let mut account = Account::new("line", "jobs".into(), true);
        account.confirm();
        account.refuse(2, &too_large());
        let lost = PublishError::Command(CommandError::Closed);
        assert_eq!(
            account.stopped(3, &lost),
            [
                "line 2 refused (message-too-large(33)): payload of 9 bytes exceeds 8",
                "publishing to jobs stopped at line 3: the connection is closed; before it 1 \
                 confirmed, 1 refused, the rest may or may not be stored",
            ]
        );
    }

    /// Each refused message is named with its reason; consecutive ones with the same reason
    /// share a line; the summary counts both outcomes and lists the refused numbers.
    #[test]
    fn names_every_refused_message() {
        let mut account = Account::new("line", "jobs".into(), true);
        account.confirm();
        account.refuse(2, &too_large());
        account.refuse(3, &too_large());
        account.confirm();
        account.refuse(5, &too_large());
        account.refuse(6, &PublishError::Command(CommandError::TooLarge { size: 9, max: 8 }));
        assert_eq!(
            account.outcome().unwrap_err(),
            [
                "lines 2-3 refused (message-too-large(33)): payload of 9 bytes exceeds 8",
                "line 5 refused (message-too-large(33)): payload of 9 bytes exceeds 8",
                "line 6 refused: message of about 9 bytes does not fit in a frame of 8 bytes",
                "published 6 messages to jobs: 2 confirmed, 4 refused (lines 2-3, 5, 6)",
            ]
        );
    }

    /// Everything refused for one reason (a missing queue, say) is one line.
    #[test]
    fn one_reason_for_everything_is_one_line() {
        let mut account = Account::new("message", "topic t".into(), true);
        account.refuse(1, &too_large());
        assert_eq!(
            account.outcome().unwrap_err(),
            ["publish to topic t failed: message 1 refused (message-too-large(33)): payload of 9 \
              bytes exceeds 8"]
        );
    }
}
