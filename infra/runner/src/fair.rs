//! The work queue as an SQS fair queue delivers it, played by the runner: LocalStack keeps a
//! standard queue's messages in the order they were sent, so one source's backlog would hold
//! back every message sent after it. On AWS, once a message group (a source) has more than
//! its share of the messages in flight, SQS returns other groups' messages first. The runner
//! does the same with what it knows and what SQS lets a consumer do: it counts the messages
//! each group has in flight, knows which sources have a session open, and puts an
//! over-share group's messages back at the end of the queue, so the next receives reach the
//! quieter groups' messages behind them. The backlog stays in the queue; the runner holds
//! only what is in flight.

use std::collections::{BTreeSet, HashMap};

/// Receives in a row a poller spends looking past an over-share group before it takes that
/// group's messages anyway (the other sources' sessions may have nothing queued yet: their
/// listing is still being read).
pub const DIGS: u32 = 10;

#[derive(Debug, Default)]
pub struct FairShare {
    /// Message group → messages handed to harvester invocations and not yet finished.
    in_flight: HashMap<String, usize>,
    /// Groups with a session open and resources still to harvest: the sources that may have
    /// work queued.
    waiting: BTreeSet<String>,
}

/// What to do with one received batch: indexes to hand to the harvester, and to put back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub take: Vec<usize>,
    pub park: Vec<usize>,
}

impl FairShare {
    /// The sources whose open sessions have resources still to harvest.
    pub fn set_waiting(&mut self, groups: impl IntoIterator<Item = String>) {
        self.waiting = groups.into_iter().collect();
    }

    /// A group's share of `capacity` messages in flight (every poller's batch), with the
    /// open sources sharing it evenly; never less than one batch.
    fn share(&self, capacity: usize, batch: usize) -> usize {
        (capacity / self.waiting.len().max(1)).max(batch)
    }

    /// Splits a received batch (each message's group) and counts what is taken as in flight.
    /// `give_in` takes everything: the poller looked past the busy group long enough.
    pub fn split(
        &mut self,
        groups: &[Option<String>],
        capacity: usize,
        batch: usize,
        give_in: bool,
    ) -> Split {
        let share = self.share(capacity, batch);
        let contested = self.waiting.len() >= 2;
        let mut split = Split::default();
        for (i, group) in groups.iter().enumerate() {
            let over = match group {
                Some(g) => {
                    contested && !give_in && self.in_flight.get(g).copied().unwrap_or(0) >= share
                }
                None => false,
            };
            if over {
                split.park.push(i);
            } else {
                if let Some(g) = group {
                    *self.in_flight.entry(g.clone()).or_default() += 1;
                }
                split.take.push(i);
            }
        }
        split
    }

    /// The invocation that took these messages ended, however it ended.
    pub fn release<'a>(&mut self, groups: impl IntoIterator<Item = &'a Option<String>>) {
        for g in groups.into_iter().flatten() {
            if let Some(n) = self.in_flight.get_mut(g) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.in_flight.remove(g);
                }
            }
        }
    }

    pub fn in_flight(&self, group: &str) -> usize {
        self.in_flight.get(group).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(names: &[&str]) -> Vec<Option<String>> {
        names.iter().map(|g| Some(g.to_string())).collect()
    }

    #[test]
    fn alone_a_source_takes_everything_whatever_it_has_in_flight() {
        let mut fair = FairShare::default();
        fair.set_waiting(["big".to_string()]);
        for _ in 0..20 {
            let split = fair.split(&groups(&["big"; 10]), 50, 10, false);
            assert_eq!(split.take.len(), 10);
        }
        assert_eq!(fair.in_flight("big"), 200);
    }

    #[test]
    fn a_source_over_its_share_is_put_back_while_another_waits() {
        let mut fair = FairShare::default();
        fair.set_waiting(["big".to_string(), "small".to_string()]);
        // Capacity 50 between two sources: 25 each.
        let first = fair.split(&groups(&["big"; 10]), 50, 10, false);
        let second = fair.split(&groups(&["big"; 10]), 50, 10, false);
        let third = fair.split(&groups(&["big"; 10]), 50, 10, false);
        assert_eq!(
            (first.take.len(), second.take.len(), third.take.len()),
            (10, 10, 5),
            "the third batch stops at the share"
        );
        assert_eq!(third.park, [5, 6, 7, 8, 9]);
        let mixed = fair.split(
            &groups(&["big", "small", "big", "small", "big"]),
            50,
            10,
            false,
        );
        assert_eq!(
            mixed,
            Split {
                take: vec![1, 3],
                park: vec![0, 2, 4]
            }
        );
        assert_eq!(fair.in_flight("big"), 25);
        assert_eq!(fair.in_flight("small"), 2);
    }

    #[test]
    fn giving_in_takes_the_busy_sources_messages_and_release_frees_its_share() {
        let mut fair = FairShare::default();
        fair.set_waiting(["big".to_string(), "small".to_string()]);
        let taken = groups(&["big"; 30]);
        assert_eq!(fair.split(&taken, 50, 10, true).take.len(), 30);
        assert_eq!(fair.split(&groups(&["big"]), 50, 10, false).park, [0]);
        assert_eq!(fair.split(&groups(&["big"]), 50, 10, true).take, [0]);
        fair.release(&taken);
        assert_eq!(fair.in_flight("big"), 1);
        assert_eq!(fair.split(&groups(&["big"]), 50, 10, false).take, [0]);
    }

    #[test]
    fn messages_without_a_group_are_never_held_back() {
        let mut fair = FairShare::default();
        fair.set_waiting(["a".to_string(), "b".to_string()]);
        let split = fair.split(&[None, None], 0, 0, false);
        assert_eq!(split.take, [0, 1]);
    }
}
