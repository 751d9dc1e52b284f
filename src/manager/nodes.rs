//! The node tracker: every worker the manager knows, how it last answered, and what is placed
//! on it.
//!
//! A node is keyed by its name. A static `--workers` entry is known by its address until the
//! worker first answers `GetStats` with its name; from then on (and across restarts, since the
//! record is stored) it is known by that name. Allocation (the requests of the unfinished tasks
//! placed on a node) is kept here incrementally, so a scheduling snapshot costs the number of
//! nodes, not the number of tasks.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    proto::pb,
    scheduler::{NodeView, Resources},
    task::TaskId,
};

/// One node as the manager sees it.
#[derive(Debug, Clone)]
pub(crate) struct NodeEntry {
    /// The key: the worker's name, or its address until it has answered.
    pub name: String,
    /// Where its WorkerService is reached.
    pub address: String,
    /// Whether its last poll (or heartbeat) succeeded.
    pub alive: bool,
    /// Whether it takes no new tasks (issue 6's drain).
    pub draining: bool,
    /// When it last answered, for people.
    pub last_seen: Option<prost_types::Timestamp>,
    /// Its last stats, and when they arrived.
    pub stats: Option<pb::NodeStats>,
    stats_at: Option<Instant>,
    /// Its labels, matched by constraints.
    pub labels: BTreeMap<String, String>,
    /// The worker process's instance id, from its last answer.
    pub instance_id: String,
    /// Why it is not READY.
    pub message: String,
    /// The requests of its unfinished tasks.
    pub allocated: Resources,
    /// Host ports of its unfinished tasks, with how many tasks hold each.
    used_ports: HashMap<(u32, pb::Protocol), u32>,
    /// How many of its unfinished tasks each service has here, by service id.
    services: HashMap<String, u32>,
    /// Its unfinished tasks.
    pub tasks: HashSet<TaskId>,
}

impl NodeEntry {
    /// A node known only by name and address, not (yet) answering.
    pub fn new(name: &str, address: &str) -> Self {
        Self {
            name: name.to_string(),
            address: address.to_string(),
            alive: false,
            draining: false,
            last_seen: None,
            stats: None,
            stats_at: None,
            labels: BTreeMap::new(),
            instance_id: String::new(),
            message: "not contacted yet".into(),
            allocated: Resources::default(),
            used_ports: HashMap::new(),
            services: HashMap::new(),
            tasks: HashSet::new(),
        }
    }

    /// A node from its stored record: DOWN until it answers again.
    pub fn from_record(node: pb::Node) -> Self {
        let mut entry = Self::new(&node.name, &node.address);
        entry.labels = node.labels.into_iter().collect();
        entry.last_seen = node.last_seen;
        entry.draining = node.state == pb::NodeState::Draining as i32;
        entry.stats = node.stats;
        entry.message = "not contacted since the manager started".into();
        entry
    }

    /// What is stored about the node: identity, labels and last stats (not its allocation,
    /// which is rebuilt from the tasks).
    pub fn record(&self) -> pb::Node {
        pb::Node {
            name: self.name.clone(),
            address: self.address.clone(),
            state: if self.draining {
                pb::NodeState::Draining as i32
            } else {
                pb::NodeState::Ready as i32
            },
            labels: self.labels.clone().into_iter().collect(),
            last_seen: self.last_seen,
            stats: self.stats.clone(),
            ..Default::default()
        }
    }

    /// The node as `ListNodes` shows it.
    pub fn to_pb(&self) -> pb::Node {
        let state = if !self.alive {
            pb::NodeState::Down
        } else if self.draining {
            pb::NodeState::Draining
        } else {
            pb::NodeState::Ready
        };
        pb::Node {
            name: self.name.clone(),
            address: self.address.clone(),
            state: state as i32,
            stats: self.stats.clone(),
            last_seen: self.last_seen,
            task_count: self.tasks.len() as u32,
            capacity: Some(self.capacity().into()),
            allocated: Some(self.allocated.into()),
            labels: self.labels.clone().into_iter().collect(),
            message: if state != pb::NodeState::Ready {
                self.message.clone()
            } else {
                // A READY node whose store refuses writes takes no tasks: say why.
                self.stats
                    .as_ref()
                    .map(|s| s.store_message.clone())
                    .unwrap_or_default()
            },
        }
    }

    fn capacity(&self) -> Resources {
        self.stats
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .map(Resources::from)
            .unwrap_or_default()
    }

    /// Forgets the tasks it holds, and their requests and ports (to hold them again).
    pub fn clear_holds(&mut self) {
        self.allocated = Resources::default();
        self.used_ports.clear();
        self.tasks.clear();
    }

    /// Records an answer: the node is alive with these stats.
    pub fn answered(
        &mut self,
        stats: Option<pb::NodeStats>,
        labels: BTreeMap<String, String>,
        instance_id: String,
    ) {
        self.alive = true;
        self.message.clear();
        self.last_seen = Some(crate::proto::now());
        self.stats = stats;
        self.stats_at = Some(Instant::now());
        self.labels = labels;
        self.instance_id = instance_id;
    }

    /// How long since it last answered (poll or heartbeat); None if never since the manager
    /// started.
    pub fn silent_for(&self) -> Option<Duration> {
        self.stats_at.map(|at| at.elapsed())
    }

    /// Counts a task (of service `service`; empty: none) as placed here.
    pub fn hold(&mut self, id: TaskId, spec: Option<&pb::TaskSpec>, service: &str) {
        if !self.tasks.insert(id) {
            return;
        }
        if !service.is_empty() {
            *self.services.entry(service.to_string()).or_default() += 1;
        }
        if let Some(spec) = spec {
            let demand = crate::scheduler::Demand::of(spec);
            self.allocated = self.allocated + demand.resources;
            for port in demand.host_ports {
                *self.used_ports.entry(port).or_default() += 1;
            }
        }
    }

    /// Stops counting a task (of service `service`; empty: none) as placed here.
    pub fn release(&mut self, id: TaskId, spec: Option<&pb::TaskSpec>, service: &str) {
        if !self.tasks.remove(&id) {
            return;
        }
        if let Some(n) = self.services.get_mut(service) {
            *n -= 1;
            if *n == 0 {
                self.services.remove(service);
            }
        }
        if let Some(spec) = spec {
            let demand = crate::scheduler::Demand::of(spec);
            self.allocated = self.allocated - demand.resources;
            for port in demand.host_ports {
                if let Some(n) = self.used_ports.get_mut(&port) {
                    *n -= 1;
                    if *n == 0 {
                        self.used_ports.remove(&port);
                    }
                }
            }
        }
    }

    /// The node as the scheduler sees it; stats older than `stale_after` do not count.
    pub fn view(&self, stale_after: Duration) -> NodeView {
        let stats = self.stats.as_ref();
        NodeView {
            name: self.name.clone(),
            alive: self.alive,
            draining: self.draining,
            runtime_ready: stats.is_some_and(|s| s.runtime_ready),
            store_read_only: stats.is_some_and(|s| !s.store_message.is_empty()),
            runs_images: stats.and_then(|s| match s.runtime.as_str() {
                "docker" => Some(true),
                "exec" => Some(false),
                _ => None,
            }),
            stats_fresh: stats.is_some()
                && self.stats_at.is_some_and(|at| at.elapsed() <= stale_after),
            capacity: self.capacity(),
            allocated: self.allocated,
            cpu_load: stats.map(|s| s.cpu_usage).unwrap_or_default(),
            used_ports: self.used_ports.keys().copied().collect(),
            labels: self.labels.clone(),
            task_count: self.tasks.len() as u32,
            service_tasks: self.services.clone(),
        }
    }
}

/// Every node, by name (the scheduler's snapshot order).
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    pub by_name: BTreeMap<String, NodeEntry>,
}

impl Nodes {
    /// The node reached at `address`, if any.
    pub fn by_address(&self, address: &str) -> Option<&NodeEntry> {
        self.by_name.values().find(|n| n.address == address)
    }

    /// The key of the node reached at `address`, creating a node keyed by the address if none.
    pub fn key_for_address(&mut self, address: &str) -> String {
        if let Some(node) = self.by_address(address) {
            return node.name.clone();
        }
        self.by_name
            .insert(address.to_string(), NodeEntry::new(address, address));
        address.to_string()
    }

    /// Gives the node at `key` its reported `name`. Returns the key removed, if the rename
    /// dropped one (its stored record must go too).
    pub fn rename(&mut self, key: &str, name: &str) -> Option<String> {
        if key == name {
            return None;
        }
        let old = self.by_name.remove(key)?;
        match self.by_name.get_mut(name) {
            Some(existing) => {
                existing.address = old.address;
                for id in old.tasks {
                    existing.tasks.insert(id);
                }
            }
            None => {
                let mut renamed = old;
                renamed.name = name.to_string();
                self.by_name.insert(name.to_string(), renamed);
            }
        }
        Some(key.to_string())
    }

    /// The scheduler's snapshot, in name order.
    pub fn views(&self, stale_after: Duration) -> Vec<NodeView> {
        self.by_name.values().map(|n| n.view(stale_after)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpu: i64, host_port: u32) -> pb::TaskSpec {
        pb::TaskSpec {
            resources: Some(pb::Resources {
                cpu_millis: cpu,
                memory_bytes: 0,
                disk_bytes: 0,
            }),
            ports: vec![pb::PortMapping {
                container_port: 80,
                host_port,
                protocol: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn allocation_goes_up_and_down_once_per_task() {
        let mut node = NodeEntry::new("w1", "127.0.0.1:1");
        let (a, b) = (TaskId::new(), TaskId::new());
        node.hold(a, Some(&spec(500, 8080)), "");
        node.hold(a, Some(&spec(500, 8080)), "");
        node.hold(b, Some(&spec(250, 0)), "");
        assert_eq!(node.allocated.cpu_millis, 750);
        assert_eq!(node.view(Duration::from_secs(1)).used_ports.len(), 1);
        node.release(a, Some(&spec(500, 8080)), "");
        node.release(a, Some(&spec(500, 8080)), "");
        assert_eq!(node.allocated.cpu_millis, 250);
        assert!(node.view(Duration::from_secs(1)).used_ports.is_empty());
        assert_eq!(node.tasks.len(), 1);
    }

    #[test]
    fn a_node_is_known_by_address_until_it_names_itself() {
        let mut nodes = Nodes::default();
        let key = nodes.key_for_address("127.0.0.1:7");
        assert_eq!(key, "127.0.0.1:7");
        assert_eq!(nodes.rename(&key, "w7"), Some(key));
        assert_eq!(nodes.key_for_address("127.0.0.1:7"), "w7");
        assert_eq!(
            nodes.by_name["w7"].to_pb().state,
            pb::NodeState::Down as i32
        );
    }
}
