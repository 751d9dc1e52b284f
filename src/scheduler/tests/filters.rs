//! Tests of the filters and the summaries: why a node is excluded, and how a pending task
//! says so.

use super::*;

#[test]
fn every_strategy_with_no_nodes_places_nothing() {
    for name in STRATEGIES {
        let s = strategy(name);
        for d in [
            s.place(&cpu(100), &[], true),
            s.place_fast(&cpu(100), &[], true),
        ] {
            assert_eq!(d.node, None, "{name}");
            assert!(d.verdicts.is_empty());
            assert_eq!(d.summary, "0/0 nodes fit: no nodes are known");
        }
    }
}

#[test]
fn summary_counts_each_node_by_its_first_failed_filter() {
    let mut down = node("down", 4000, GI);
    down.alive = false;
    let mut x = node("x", 1000, GI);
    x.allocated.cpu_millis = 750;
    let mut y = node("y", 1000, GI);
    y.allocated.cpu_millis = 900;
    let nodes = [x, down, y];
    let d = strategy("spread").place(&cpu(500), &nodes, true);
    assert_eq!(
        d.summary,
        "0/3 nodes fit: 2 insufficient cpu (wanted 500m, largest free 250m), 1 down"
    );
    let fast = strategy("spread").place_fast(&cpu(500), &nodes, true);
    assert_eq!(fast.summary, d.summary);
}

#[test]
fn summary_names_memory_and_disk() {
    let mut n = node("n", 1000, GI);
    n.allocated.memory_bytes = 768 * MI;
    let demand = Demand {
        resources: Resources {
            cpu_millis: 100,
            memory_bytes: 512 * MI,
            disk_bytes: 20 * GI,
        },
        ..Default::default()
    };
    let d = strategy("spread").place(&demand, &[n.clone()], true);
    assert_eq!(
        d.summary,
        "0/1 nodes fit: 1 insufficient memory (wanted 512Mi, largest free 256Mi)"
    );
    n.allocated.memory_bytes = 0;
    let d = strategy("spread").place(&demand, &[n], true);
    assert_eq!(
        d.summary,
        "0/1 nodes fit: 1 insufficient disk (wanted 20Gi, largest free 10Gi)"
    );
}

#[test]
fn constraints_pick_only_the_labelled_node_and_name_the_constraint_when_it_is_full() {
    let mut a = node("a", 1000, GI);
    a.labels.insert("zone".into(), "a".into());
    let mut b = node("b", 1000, GI);
    b.labels.insert("zone".into(), "b".into());
    let unlabelled = node("c", 8000, 8 * GI);
    let mut demand = cpu(500);
    demand.constraints.insert("zone".into(), "b".into());
    let mut nodes = vec![a, unlabelled, b];

    for name in STRATEGIES {
        assert_eq!(
            strategy(name).place(&demand, &nodes, true).node.as_deref(),
            Some("b"),
            "{name}"
        );
    }

    nodes[2].allocated.cpu_millis = 750;
    let d = strategy("spread").place(&demand, &nodes, true);
    assert_eq!(d.node, None);
    assert_eq!(
        d.summary,
        "0/3 nodes fit: 2 constraint zone=b not met, \
         1 insufficient cpu (wanted 500m, largest free 250m)"
    );
    let a = d.verdicts[0]
        .filters
        .iter()
        .find(|f| f.filter == Filter::Constraints)
        .unwrap();
    assert!(!a.passed);
    assert_eq!(a.reason, "constraint zone=b not met");
}

#[test]
fn summary_of_constraints_alone() {
    let mut demand = cpu(0);
    demand.constraints.insert("zone".into(), "b".into());
    let d = strategy("binpack").place_fast(&demand, &[node("a", 1000, GI)], true);
    assert_eq!(d.summary, "0/1 nodes fit: 1 constraint zone=b not met");
}

#[test]
fn a_taken_host_port_excludes_the_node_but_another_protocol_does_not() {
    let mut a = node("a", 8000, 8 * GI);
    a.used_ports.insert((8080, pb::Protocol::Tcp));
    let b = node("b", 1000, GI);
    let mut demand = cpu(100);
    demand.host_ports.push((8080, pb::Protocol::Tcp));
    let nodes = [a, b];

    for name in STRATEGIES {
        let d = strategy(name).place(&demand, &nodes, true);
        assert_eq!(d.node.as_deref(), Some("b"), "{name}");
        let ports = d.verdicts[0]
            .filters
            .iter()
            .find(|f| f.filter == Filter::Ports)
            .unwrap();
        assert!(!ports.passed);
        assert_eq!(ports.reason, "host port 8080 in use");
    }

    let d = strategy("spread").place(&demand, &nodes[..1], true);
    assert_eq!(d.summary, "0/1 nodes fit: 1 host port 8080 in use");

    let udp = Demand {
        host_ports: vec![(8080, pb::Protocol::Udp)],
        ..cpu(100)
    };
    assert_eq!(
        strategy("spread").place(&udp, &nodes, true).node.as_deref(),
        Some("a")
    );
}
