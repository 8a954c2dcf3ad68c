//! An operator's reload: a new configuration, applied from now on. Nothing already accepted
//! is dropped or changed by it: a lowered limit refuses what comes next (a new connection
//! beyond `connections_max`, a publish beyond a queue's cap), and each open connection keeps
//! the limits it was told in `HelloOk`.

use super::Broker;
use crate::auth::failed_logins::FailedLogins;
use crate::config::{BrokerConfig, ConfigError};
use crate::policy::token_bucket::TokenBucket;
use crate::time::Instant;

impl Broker {
    /// Applies `config` from `now` on, or refuses it whole (nothing changes) when a value is
    /// out of range. The driver's own settings (`seed`, `epoch_unix_ms`, `audit`) are kept:
    /// they are fixed for the broker's life. A changed failed-login budget starts afresh.
    /// The users are not part of the configuration: see [`Broker::set_users`]. Drain `poll_output` afterwards, as after any input.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        mut config: BrokerConfig,
    ) -> Result<(), ConfigError> {
        config.validate()?;
        self.advance_time(now);
        config.seed = self.config.seed;
        config.epoch_unix_ms = self.config.epoch_unix_ms;
        config.audit = self.config.audit;
        // Keys are read at the start only: the log holds its own.
        config.keyring = self.config.keyring.clone();
        let old = std::mem::replace(&mut self.config, config);
        let (old_auth, auth) = (&old.auth, &self.config.auth);
        if (
            old_auth.failed_logins_burst,
            old_auth.failed_login_refill_ms,
            old_auth.failure_sources_max,
        ) != (auth.failed_logins_burst, auth.failed_login_refill_ms, auth.failure_sources_max)
        {
            self.auth.failed = FailedLogins::new(auth);
        }
        let limits = &self.config.limits;
        if old.limits.publish_rate != limits.publish_rate {
            self.publish_rate = limits.publish_rate.map(|rate| TokenBucket::new(rate, now));
        }
        if old.limits.connection_publish_rate != limits.connection_publish_rate {
            let rate = limits.connection_publish_rate;
            for connection in self.connections.values_mut().filter(|c| c.is_open()) {
                connection.publish_rate = rate.map(|rate| TokenBucket::new(rate, now));
            }
        }
        self.log.reconfigure(self.config.storage.clone());
        self.evaluate_alarms();
        assert_eq!(self.config.seed, old.seed, "the jitter seed changed under the broker");
        self.resume_partial_frames();
        self.dispatch_dirty_queues();
        self.after_input();
        debug_assert!(self.dirty_queues.is_empty(), "a reload left queues unvisited");
        Ok(())
    }
}
