//! Docker's event stream as hints to the monitor: the id of every task whose container
//! started, died or was removed, so an exit is seen at once rather than at the next sweep.

use std::{collections::HashMap, time::Duration};

use bollard::{query_parameters::EventsOptions, Docker};
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::LABEL_TASK_ID;
use crate::{error::runtime::short, TaskId};

/// How long to wait before subscribing to Docker's events again after the stream broke.
const EVENTS_RETRY: Duration = Duration::from_secs(1);

/// Follows the engine's container events matching `filters` (this worker's label) until
/// `cancel`, sending the task id of each to `hints`; subscribes again when the stream breaks.
pub(super) async fn watch(
    docker: &Docker,
    mut filters: HashMap<String, Vec<String>>,
    hints: UnboundedSender<TaskId>,
    cancel: CancellationToken,
) {
    filters.insert("type".into(), vec!["container".into()]);
    for event in ["start", "die", "destroy", "oom", "kill"] {
        filters
            .entry("event".into())
            .or_default()
            .push(event.into());
    }
    loop {
        let options = EventsOptions {
            filters: Some(filters.clone()),
            ..Default::default()
        };
        let mut events = docker.events(Some(options));
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(event)) => {
                    let id = event
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|a| a.get(LABEL_TASK_ID).cloned())
                        .and_then(|id| TaskId::parse("label", &id).ok());
                    if let Some(id) = id {
                        let _ = hints.send(id);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %short(&e), "docker event stream broke; subscribing again");
                    break;
                }
                None => break,
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EVENTS_RETRY) => {}
        }
    }
}
