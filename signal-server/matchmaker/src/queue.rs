//! The waiting queue: who waits, in arrival order, indexed by interest, and which of them
//! already accept anyone. Pure data structure; the pairing rules that use it live in
//! `lib.rs`.

use std::collections::{BTreeMap, HashMap};

use crate::SessionKey;

/// Sessions waiting for a stranger. Each entry is keyed by its ticket: a number taken when
/// the session asked to be matched, so a smaller ticket waited longer.
#[derive(Debug, Default)]
pub(crate) struct WaitingQueue {
    all: BTreeMap<u64, SessionKey>,
    /// Waiting sessions that accept a stranger with no common interest.
    open: BTreeMap<u64, SessionKey>,
    by_interest: HashMap<String, BTreeMap<u64, SessionKey>>,
}

impl WaitingQueue {
    /// The partner the rules choose for a session with these interests: the longest-waiting
    /// session sharing one of them; failing that, if `open`, the longest-waiting session that
    /// accepts anyone. Returns its ticket and key.
    pub(crate) fn best_partner(&self, interests: &[String], open: bool) -> Option<(u64, SessionKey)> {
        let shared = interests
            .iter()
            .filter_map(|tag| self.by_interest.get(tag)?.first_key_value())
            .min_by_key(|(ticket, _)| **ticket)
            .map(|(t, k)| (*t, *k));
        shared.or_else(|| if open { self.open.first_key_value().map(|(t, k)| (*t, *k)) } else { None })
    }

    pub(crate) fn insert(&mut self, ticket: u64, key: SessionKey, interests: &[String], open: bool) {
        self.all.insert(ticket, key);
        if open {
            self.open.insert(ticket, key);
        }
        for tag in interests {
            self.by_interest.entry(tag.clone()).or_default().insert(ticket, key);
        }
    }

    pub(crate) fn remove(&mut self, ticket: u64, interests: &[String]) {
        self.all.remove(&ticket);
        self.open.remove(&ticket);
        for tag in interests {
            if let Some(index) = self.by_interest.get_mut(tag) {
                index.remove(&ticket);
                if index.is_empty() {
                    self.by_interest.remove(tag);
                }
            }
        }
    }

    /// Marks a waiting session as accepting anyone.
    pub(crate) fn open_up(&mut self, ticket: u64, key: SessionKey) {
        if self.all.contains_key(&ticket) {
            self.open.insert(ticket, key);
        }
    }

    /// The two longest-waiting sessions that accept anyone, if there are two.
    pub(crate) fn two_oldest_open(&self) -> Option<[(u64, SessionKey); 2]> {
        let mut open = self.open.iter().map(|(t, k)| (*t, *k));
        Some([open.next()?, open.next()?])
    }

    pub(crate) fn is_open(&self, ticket: u64) -> bool {
        self.open.contains_key(&ticket)
    }

    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Waiting sessions, longest-waiting first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, SessionKey)> + '_ {
        self.all.iter().map(|(t, k)| (*t, *k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefers_shared_interest_then_oldest_open() {
        let mut q = WaitingQueue::default();
        q.insert(1, 10, &[], true);
        q.insert(2, 20, &tags(&["chess"]), false);
        q.insert(3, 30, &tags(&["chess", "go"]), false);
        assert_eq!(q.best_partner(&tags(&["go", "chess"]), false), Some((2, 20)));
        assert_eq!(q.best_partner(&tags(&["go"]), false), Some((3, 30)));
        assert_eq!(q.best_partner(&tags(&["art"]), false), None);
        assert_eq!(q.best_partner(&tags(&["art"]), true), Some((1, 10)));
        q.remove(2, &tags(&["chess"]));
        assert_eq!(q.best_partner(&tags(&["chess"]), false), Some((3, 30)));
        q.open_up(3, 30);
        q.remove(1, &[]);
        assert_eq!(q.best_partner(&[], true), Some((3, 30)));
        assert_eq!(q.len(), 1);
    }
}
