//! `cubectl events`: the event log, of every task or of one, oldest first.

use clap::Args;

use crate::{client::Client, proto::pb};

use super::{
    output::{self, event_type, format_time, short_id, task_state, Table},
    Outcome, OutputArg,
};

/// Arguments of `cubectl events`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cubectl events\n  cubectl events --tail 500\n  \
    cubectl events web -o json"
)]
pub struct EventsArgs {
    /// Only this task's events: an id, a unique id prefix or an unfinished task's name.
    #[arg(value_name = "TASK")]
    pub id: Option<String>,
    /// Only the last N events (0: all). Default: the last 50 of all tasks, every event of one
    /// task.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArg,
}

/// How many of all tasks' events `events` shows when not told: a screenful, not thousands.
const DEFAULT_TAIL: usize = 50;

/// Runs `cubectl events`: every page, joined into one response, cut to the last `--tail`.
pub async fn run(client: &Client, args: EventsArgs) -> Outcome {
    let mut response = client
        .list_all_events(args.id.as_deref().unwrap_or(""))
        .await
        .map_err(super::task_failure)?;
    let tail = match (args.tail, &args.id) {
        (Some(n), _) => n,
        (None, Some(_)) => 0,
        (None, None) => DEFAULT_TAIL,
    };
    if tail > 0 && response.events.len() > tail {
        let cut = response.events.len() - tail;
        response.events.drain(..cut);
    }
    output::print(args.output.format, &response, |r| render(&r.events))
}

/// The events table: TIME (UTC), TASK, TYPE, STATE, NODE, MESSAGE.
pub fn render(events: &[pb::TaskEvent]) -> String {
    let mut table = Table::new(&["TIME", "TASK", "TYPE", "STATE", "NODE", "MESSAGE"]);
    for event in events {
        table.row(vec![
            format_time(event.time.as_ref()),
            short_id(&event.task_id).to_string(),
            event_type(event.r#type),
            task_state(event.state),
            event.node.clone(),
            event.message.clone(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_render_in_order() {
        let event = |seq, kind: pb::EventType, state: pb::TaskState, message: &str| pb::TaskEvent {
            seq,
            task_id: "0123456789abcdef".into(),
            time: Some(prost_types::Timestamp {
                seconds: 60 * seq as i64,
                nanos: 0,
            }),
            r#type: kind.into(),
            state: state.into(),
            node: if seq > 1 { "w1".into() } else { String::new() },
            message: message.into(),
        };
        let text = render(&[
            event(
                1,
                pb::EventType::Submitted,
                pb::TaskState::Pending,
                "submitted",
            ),
            event(
                2,
                pb::EventType::StateChanged,
                pb::TaskState::Scheduled,
                "placed on w1",
            ),
        ]);
        assert_eq!(
            text,
            "TIME                       TASK       TYPE            STATE       NODE   MESSAGE\n\
             1970-01-01T00:01:00.000Z   01234567   SUBMITTED       PENDING            submitted\n\
             1970-01-01T00:02:00.000Z   01234567   STATE_CHANGED   SCHEDULED   w1     placed on w1\n"
        );
    }
}
