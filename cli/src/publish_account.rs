//! What became of the messages one `chute publish` sent: how many the server confirmed, and
//! which it (or the client, before sending) refused and why, by line of stdin or by number.
//! A partial failure names every refused message, so a retry can resend just those instead of
//! duplicating the ones already stored.

use chute_client::PublishError;

/// The messages of one run, numbered from 1 in the order they were read.
pub struct Account {
    /// What a message is called in the account: `line` (stdin) or `message`.
    unit: &'static str,
    /// Where they went: a queue name, or `topic NAME`.
    target: String,
    confirmed: u64,
    refused: u64,
    /// Refusals in message order, consecutive messages refused for the same reason together.
    refusals: Vec<Refusal>,
}

/// Messages `first..=last`, all refused for `reason`.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    first: u64,
    last: u64,
    reason: String,
}

impl Account {
    pub fn new(unit: &'static str, target: String) -> Account {
        Account { unit, target, confirmed: 0, refused: 0, refusals: Vec::new() }
    }

    pub fn confirm(&mut self) {
        self.confirmed += 1;
    }

    /// Message `number` was refused: by the server (`Refused`) or by the client before sending
    /// (`Command`: too large for a frame, an invalid attribute).
    pub fn refuse(&mut self, number: u64, error: &PublishError) {
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

    /// `Ok` with the success line when every message was confirmed; otherwise `Err` with the
    /// lines of the account, the summary last.
    pub fn outcome(&self) -> Result<String, Vec<String>> {
        let Self { target, confirmed, refused, .. } = self;
        let total = confirmed + refused;
        if *refused == 0 {
            return Ok(format!("published {total} messages to {target} (all confirmed)"));
        }
        if let ([only], 0) = (&self.refusals[..], confirmed) {
            return Err(vec![format!("publish to {target} failed: {}", self.describe(only))]);
        }
        let summary = format!(
            "published {total} messages to {target}: {confirmed} confirmed, {refused} refused ({})",
            self.refused_numbers()
        );
        Err(self.refusal_lines().chain([summary]).collect())
    }

    /// The account of a run cut short at message `number` by `error` (the connection ended):
    /// what is known, and that the rest may or may not be stored.
    pub fn stopped(&self, number: u64, error: &PublishError) -> Vec<String> {
        let Self { unit, target, confirmed, refused, .. } = self;
        let summary = format!(
            "publishing to {target} stopped at {unit} {number}: {error}; before it {confirmed} \
             confirmed, {refused} refused, the rest may or may not be stored"
        );
        self.refusal_lines().chain([summary]).collect()
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
        let mut account = Account::new("line", "jobs".into());
        account.confirm();
        account.confirm();
        assert_eq!(account.outcome(), Ok("published 2 messages to jobs (all confirmed)".into()));
    }

    /// A run cut short says where, what was known by then, and that the rest is unknown.
    #[test]
    fn stopped_says_what_is_known() {
        let mut account = Account::new("line", "jobs".into());
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
        let mut account = Account::new("line", "jobs".into());
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
        let mut account = Account::new("message", "topic t".into());
        account.refuse(1, &too_large());
        assert_eq!(
            account.outcome().unwrap_err(),
            ["publish to topic t failed: message 1 refused (message-too-large(33)): payload of 9 \
              bytes exceeds 8"]
        );
    }
}
