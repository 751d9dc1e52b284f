//! `cubectl run`: build a TaskSpec from flags (or read them from a task file), submit it with
//! an idempotency key, print the new id, and with `--wait` follow it until it runs.
//!
//! The verb is here; `flags.rs` turns flags into a spec, `file.rs` reads task files and
//! `wait.rs` follows a task until it runs.

use tonic::Code;

use crate::{
    client::{Client, ClientError},
    proto::pb,
    task::MAX_SUBMIT_BATCH,
};

use super::{print_err, print_out, Failure, Outcome};

mod disconnect;
mod docker;
mod file;
mod flags;
mod quantities;
mod wait;

pub use docker::with_docker_tips;
pub use file::{file_items, parse_task_file, read_file_text};
pub use flags::{parse_http_probe, parse_pair, parse_port, RestartArg, RunArgs};
pub(crate) use quantities::read_quantities;
pub use wait::wait_until_running;

/// Runs `cubectl run`. One task goes by SubmitTask; more (a task file's list, `--count`) go
/// by SubmitTasks, up to 1000 a call, so a bad spec in the list submits none of that call.
pub async fn run(client: &Client, args: RunArgs) -> Outcome {
    let specs = match &args.file {
        Some(path) => file::read_task_file(path)?,
        None => vec![args.spec()],
    };
    let count = args.count as usize;
    let tasks: Vec<(pb::TaskSpec, String)> = specs
        .iter()
        .flat_map(|spec| std::iter::repeat_n(spec, count))
        .map(|spec| (spec.clone(), uuid::Uuid::new_v4().to_string()))
        .collect();
    let mut warned = false;
    let mut on_retry = |error: &ClientError| {
        if !warned {
            print_err(&format!("cubectl: {error}; retrying\n"));
            warned = true;
        }
    };
    let mut ids = Vec::with_capacity(tasks.len());
    if let [(spec, request_id)] = tasks.as_slice() {
        let response = client
            .submit_task(spec.clone(), request_id, &mut on_retry)
            .await
            .map_err(submit_failure)?;
        let id = response.task.unwrap_or_default().id;
        print_out(&format!("{id}\n"));
        ids.push(id);
    } else {
        for chunk in tasks.chunks(MAX_SUBMIT_BATCH) {
            let response = client
                .submit_tasks(chunk, &mut on_retry)
                .await
                .map_err(submit_failure)?;
            // Printed per call: an error in a later call leaves these accepted.
            for answer in response.tasks {
                let id = answer.task.unwrap_or_default().id;
                print_out(&format!("{id}\n"));
                ids.push(id);
            }
        }
    }
    if args.wait {
        for id in &ids {
            wait_until_running(client, id, args.wait_timeout, args.settle).await?;
        }
    }
    Ok(())
}

fn submit_failure(error: ClientError) -> Failure {
    let code = error.code();
    let failure = Failure::from(error);
    match code {
        Code::InvalidArgument => failure.with_hint(
            "fix the field named above; `cubectl run --help` lists the flags and their formats",
        ),
        _ => failure,
    }
}
