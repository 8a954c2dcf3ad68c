//! The queues of one run: their names (one queue is named after the run; several get the
//! suffixes `-0`, `-1`, … as in the peer harness), declaring them before the run and deleting
//! the ones the run created after it.

use chute_client::{Connection, Durability, QueueOptions};
use futures::executor::block_on;

/// The run's queues, and which of them it created (and so deletes).
pub struct RunQueues {
    pub names: Vec<String>,
    created: Vec<bool>,
}

/// `base` for one queue; `base-0` … `base-{count - 1}` for several.
pub fn names(base: &str, count: u32) -> Vec<String> {
    match count {
        1 => vec![base.to_string()],
        _ => (0..count).map(|q| format!("{base}-{q}")).collect(),
    }
}

impl RunQueues {
    /// Declares every queue (durable or in memory). An existing queue is used if it is empty;
    /// one holding messages fails the run, after the queues declared so far are deleted.
    pub fn declare(admin: &Connection, names: Vec<String>, durable: bool) -> Result<Self, String> {
        let durability = if durable { Durability::Always } else { Durability::None };
        let mut queues = RunQueues { names: Vec::with_capacity(names.len()), created: Vec::new() };
        for name in names {
            let declared = block_on(declare_empty(admin, &name, durability));
            queues.names.push(name);
            match declared {
                Ok(created) => queues.created.push(created),
                Err(error) => {
                    queues.created.push(false);
                    queues.delete_created(admin);
                    return Err(error);
                }
            }
        }
        Ok(queues)
    }

    /// Deletes the queues this run created; says on stderr which could not be.
    pub fn delete_created(&self, admin: &Connection) {
        for (name, _) in self.names.iter().zip(&self.created).filter(|(_, created)| **created) {
            if let Err(e) = block_on(admin.delete_queue(name, false, false)) {
                eprintln!("chute bench: could not delete queue {name}: {e}");
            }
        }
    }
}

/// Declares `name`; returns whether it was created. An existing queue must be empty.
async fn declare_empty(
    admin: &Connection,
    name: &str,
    durability: Durability,
) -> Result<bool, String> {
    let options = QueueOptions { durability, ..QueueOptions::default() };
    let declared = admin
        .declare_queue(name, options)
        .await
        .map_err(|e| format!("declare queue {name}: {e}"))?;
    if !declared.created {
        let stats = admin.queue_stats(name).await.map_err(|e| e.to_string())?;
        let held = stats.ready + stats.delayed + stats.in_flight + stats.group_blocked;
        if held > 0 {
            return Err(format!("queue {name} holds {held} messages; the bench needs it empty"));
        }
    }
    Ok(declared.created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_queue_keeps_the_name_several_get_suffixes() {
        assert_eq!(names("q", 1), ["q"]);
        assert_eq!(names("q", 3), ["q-0", "q-1", "q-2"]);
        assert_eq!(names("chute-bench-1", 64).last().map(String::as_str), Some("chute-bench-1-63"));
    }
}
