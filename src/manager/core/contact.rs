//! Contacts: when each registered worker instance last heartbeated, behind a leaf lock of its
//! own, so that a heartbeat counts the moment it arrives even while the state's lock is held
//! for a long piece of work (a full sync of thousands of tasks). Liveness takes the newer of
//! this and the node's last poll answer.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// One worker instance's last heartbeat.
struct Contact {
    instance_id: String,
    at: Instant,
}

/// Last heartbeats by node name (a leaf lock: nothing is locked while it is held).
#[derive(Default)]
pub(crate) struct Contacts(Mutex<HashMap<String, Contact>>);

impl Contacts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Contact>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `name` is this worker instance, heard from now (a registration or a heartbeat the
    /// state accepted).
    pub fn set(&self, name: &str, instance_id: &str) {
        self.map().insert(
            name.to_string(),
            Contact {
                instance_id: instance_id.to_string(),
                at: Instant::now(),
            },
        );
    }

    /// A heartbeat from `name` as `instance_id`: true, and counted, when that is the instance
    /// known; false when the state must decide (unknown node, another instance).
    pub fn touch(&self, name: &str, instance_id: &str) -> bool {
        match self.map().get_mut(name) {
            Some(c) if c.instance_id == instance_id => {
                c.at = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// How long since `name` last heartbeated; None if never (or forgotten).
    pub fn silent_for(&self, name: &str) -> Option<Duration> {
        self.map().get(name).map(|c| c.at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_the_known_instance_counts() {
        let contacts = Contacts::default();
        assert!(
            !contacts.touch("w1", "i1"),
            "an unknown node is the state's to judge"
        );
        assert_eq!(contacts.silent_for("w1"), None);
        contacts.set("w1", "i1");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(contacts.silent_for("w1"), Some(Duration::from_secs(2)));
        assert!(
            !contacts.touch("w1", "i2"),
            "another instance is not this one"
        );
        assert_eq!(contacts.silent_for("w1"), Some(Duration::from_secs(2)));
        assert!(contacts.touch("w1", "i1"));
        assert_eq!(contacts.silent_for("w1"), Some(Duration::ZERO));
    }
}
