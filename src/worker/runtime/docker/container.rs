//! A task's spec as a Docker container: the create body (labels, env, cpu and memory limits,
//! port bindings) and, once it runs, the host ports Docker bound.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding};

use super::{LABEL_TASK_ID, LABEL_WORKER};
use crate::{pb, task::protocol_of, worker::runtime::Launch};

/// What Docker is asked to create for one run of a task of the worker called `worker`.
pub(super) fn create_body(launch: &Launch, worker: &str) -> ContainerCreateBody {
    let spec = &launch.spec;
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_TASK_ID.into(), launch.id.to_string());
    labels.insert(LABEL_WORKER.into(), worker.to_string());
    labels.insert("cube.attempt".into(), launch.attempt.to_string());

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &spec.ports {
        let key = port_key(port);
        exposed.push(key.clone());
        bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: None,
                host_port: Some(if port.host_port == 0 {
                    String::new()
                } else {
                    port.host_port.to_string()
                }),
            }]),
        );
    }
    let resources = spec.resources.unwrap_or_default();
    let host_config = HostConfig {
        nano_cpus: (resources.cpu_millis > 0).then(|| resources.cpu_millis * 1_000_000),
        memory: (resources.memory_bytes > 0).then_some(resources.memory_bytes),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        ..Default::default()
    };
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!env.is_empty()).then_some(env),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The published ports of `spec` with the host ports Docker bound (asked for or chosen).
pub(super) fn bound_ports(
    spec: &pb::TaskSpec,
    inspected: &ContainerInspectResponse,
) -> Vec<pb::PortMapping> {
    let bound = inspected
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.clone())
        .unwrap_or_default();
    spec.ports
        .iter()
        .map(|port| {
            let key = port_key(port);
            let host_port = bound
                .get(&key)
                .and_then(|b| b.as_ref())
                .and_then(|b| b.iter().find_map(|b| b.host_port.as_deref()?.parse().ok()))
                .unwrap_or(port.host_port);
            pb::PortMapping {
                container_port: port.container_port,
                host_port,
                protocol: protocol_of(port) as i32,
            }
        })
        .collect()
}

/// Docker's key for a port: `8080/tcp`.
fn port_key(port: &pb::PortMapping) -> String {
    format!(
        "{}/{}",
        port.container_port,
        protocol_name(protocol_of(port))
    )
}

fn protocol_name(protocol: pb::Protocol) -> &'static str {
    match protocol {
        pb::Protocol::Udp => "udp",
        pb::Protocol::Tcp | pb::Protocol::Unspecified => "tcp",
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::NetworkSettings;

    use super::*;
    use crate::TaskId;

    /// The body carries the labels a restarted worker finds its containers by, the limits and
    /// the port bindings (an empty host port lets Docker choose); the bound ports are read back.
    #[test]
    fn a_spec_becomes_a_container_and_its_bound_ports_are_read_back() {
        let id = TaskId::new();
        let port = pb::PortMapping {
            container_port: 8080,
            host_port: 0,
            protocol: pb::Protocol::Tcp as i32,
        };
        let launch = Launch {
            id,
            spec: pb::TaskSpec {
                image: "cube-test/busybox:latest".into(),
                ports: vec![port],
                resources: Some(pb::Resources {
                    cpu_millis: 500,
                    ..Default::default()
                }),
                ..Default::default()
            },
            attempt: 2,
        };
        let body = create_body(&launch, "w1");
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_TASK_ID], id.to_string());
        assert_eq!(labels[LABEL_WORKER], "w1");
        assert_eq!(labels["cube.attempt"], "2");
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, None);
        let bindings = host.port_bindings.unwrap();
        assert_eq!(
            bindings["8080/tcp"].as_ref().unwrap()[0]
                .host_port
                .as_deref(),
            Some("")
        );

        let inspected = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([(
                    "8080/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some("32768".into()),
                    }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ports = bound_ports(&launch.spec, &inspected);
        assert_eq!(ports[0].host_port, 32768);
        assert_eq!(ports[0].container_port, 8080);
    }
}
