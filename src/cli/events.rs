//! `cubectl events`: the event log, of every task or of one, oldest first.

use clap::Args;

use crate::{client::Client, proto::pb};

use super::{
    output::{
        self, event_type, fixed_line, format_time, short_id, task_state, to_json_line, Table,
    },
    print_err, print_out, Format, Outcome, OutputArg,
};

/// Arguments of `cubectl events`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cubectl events\n  cubectl events --tail 500\n  \
    cubectl events -w\n  cubectl events web -o json"
)]
pub struct EventsArgs {
    /// Only this task's events: an id, a unique id prefix or an unfinished task's name.
    #[arg(value_name = "TASK")]
    pub id: Option<String>,
    /// Only the last N events (0: all). Default: the last 50 of all tasks, every event of one
    /// task. Up to 1000 the manager picks them; past that every page is fetched.
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Keep printing new events as they are written (every second) until Ctrl-C; with -o json,
    /// one event per line.
    #[arg(short = 'w', long = "watch", visible_alias = "follow")]
    pub watch: bool,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArg,
}

/// How many of all tasks' events `events` shows when not told: a screenful, not thousands.
const DEFAULT_TAIL: u32 = 50;

/// The most events the manager returns as a tail (its page size cap).
const MAX_SERVER_TAIL: u32 = 1000;

/// How often `events -w` asks for new events.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Minimum widths of the streamed columns (TIME, TASK, TYPE, STATE, NODE).
const WIDTHS: [usize; 5] = [24, 8, 13, 9, 8];

/// Runs `cubectl events`: the last `--tail` events (picked by the manager when it can), then
/// with `-w` the new ones as they come.
pub async fn run(client: &Client, args: EventsArgs) -> Outcome {
    let task = args.id.as_deref().unwrap_or("");
    let tail = match (args.tail, &args.id) {
        (Some(n), _) => n,
        (None, Some(_)) => 0,
        (None, None) => DEFAULT_TAIL,
    };
    let response = match tail {
        1..=MAX_SERVER_TAIL => client.last_events(task, tail).await,
        _ => client.list_all_events(task).await.map(|mut all| {
            let cut = all.events.len().saturating_sub(tail as usize);
            if tail > 0 {
                all.events.drain(..cut);
            }
            all
        }),
    }
    .map_err(super::task_failure)?;
    if !args.watch {
        return output::print(args.output.format, &response, |r| render(&r.events));
    }
    let format = args.output.format;
    if format == Format::Table {
        print_out(&fixed_line(&HEADER.map(String::from), &WIDTHS));
    }
    response.events.iter().for_each(|e| print_event(e, format));
    // A name stands for an unfinished task only: follow the task by its id from here on.
    let task = match (&args.id, response.events.first()) {
        (Some(_), Some(event)) => event.task_id.as_str(),
        _ => task,
    };
    follow(client, task, response.cursor.clone(), format).await
}

/// Asks for the events after `cursor` every second and prints them, until Ctrl-C.
async fn follow(client: &Client, task: &str, mut cursor: String, format: Format) -> Outcome {
    print_err("-- watching for new events (Ctrl-C to stop)\n");
    let mut more = false;
    loop {
        if !more {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
        let page = client
            .list_events(pb::ListEventsRequest {
                task_id: task.to_string(),
                page_token: cursor.clone(),
                ..Default::default()
            })
            .await
            .map_err(super::task_failure)?;
        page.events.iter().for_each(|e| print_event(e, format));
        more = !page.next_page_token.is_empty();
        if !page.cursor.is_empty() {
            cursor = page.cursor;
        }
    }
}

/// One event as a streamed line: a table row, or a JSON line.
fn print_event(event: &pb::TaskEvent, format: Format) {
    match format {
        Format::Table => print_out(&fixed_line(&cells(event), &WIDTHS)),
        Format::Json => print_out(&to_json_line(event)),
    }
}

const HEADER: [&str; 6] = ["TIME", "TASK", "TYPE", "STATE", "NODE", "MESSAGE"];

/// An event's cells, in the order of HEADER.
fn cells(event: &pb::TaskEvent) -> Vec<String> {
    vec![
        format_time(event.time.as_ref()),
        short_id(&event.task_id).to_string(),
        event_type(event.r#type),
        task_state(event.state),
        event.node.clone(),
        event.message.clone(),
    ]
}

/// The events table: TIME (UTC), TASK, TYPE, STATE, NODE, MESSAGE.
pub fn render(events: &[pb::TaskEvent]) -> String {
    let mut table = Table::new(&HEADER);
    for event in events {
        table.row(cells(event));
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
