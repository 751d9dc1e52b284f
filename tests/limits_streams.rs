//! Streams and answers stay bounded: watches past the cap are refused while the manager's
//! memory stays flat, a watcher that does not read is cut off with a clear status, and answers
//! that would pass the 4 MiB message limit come in pages (a worker's full sync included).
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use cube::{
    limits::streams::{MAX_ANSWER_BYTES, MAX_WATCHES},
    pb::{self, manager_service_client::ManagerServiceClient},
};
use tonic::Code;

/// The resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    common::rss_bytes(pid)
}

/// An Exec spec of about `bytes` (its env holds the bulk).
fn sized_spec(name: &str, command: &[&str], bytes: usize) -> pb::TaskSpec {
    let chunk = 1000;
    let env: HashMap<String, String> = (0..bytes / chunk)
        .map(|i| (format!("PAD{i}"), "x".repeat(chunk)))
        .collect();
    pb::TaskSpec {
        env,
        ..exec_spec(name, command)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// 300 WatchTasks streams against a manager holding 1,000 tasks: the first MAX_WATCHES read
/// their snapshot and stay open, the rest get RESOURCE_EXHAUSTED naming the limit, the
/// manager's memory grows by less than 100 MB, and cubectl still answers. Closed watches free
/// their places.
#[test]
fn watches_past_the_cap_are_refused_and_memory_stays_flat() {
    const WATCHES: usize = 300;
    const TASKS: usize = 1000;
    let cluster = Cluster::builder().start();
    let pid = cluster.manager().pid();
    let rt = runtime();
    rt.block_on(async {
        let mut client = cluster.client().await;
        submit_many(&mut client, &sized_spec("watched", &["true"], 2000), TASKS).await;
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = rss(pid);

    // 12 connections, 25 streams each: under the per-connection stream limit, so every
    // stream reaches the manager's cap.
    let channels: Vec<ManagerServiceClient<cube::tls::AuthChannel>> = rt.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..12 {
            channels.push(cluster.client().await);
        }
        channels
    });
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel();
    let outcomes: Vec<Result<usize, tonic::Status>> = rt.block_on(async {
        let mut joins = Vec::new();
        for i in 0..WATCHES {
            let mut client = channels[i % channels.len()].clone();
            let held = held_tx.clone();
            joins.push(tokio::spawn(async move {
                let mut stream = client
                    .watch_tasks(pb::WatchTasksRequest::default())
                    .await?
                    .into_inner();
                let mut initial = 0;
                loop {
                    let message = stream.message().await?.expect("the watch ended early");
                    if message.synced {
                        break;
                    }
                    initial += 1;
                }
                // Hold the stream open until the test ends.
                let _ = held.send(stream);
                Ok(initial)
            }));
        }
        let mut outcomes = Vec::new();
        for join in joins {
            outcomes.push(join.await.unwrap());
        }
        outcomes
    });
    let during = rss(pid);
    let opened: Vec<usize> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().copied())
        .collect();
    let refused: Vec<&tonic::Status> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!(
        "manager RSS: {} MB before, {} MB with {} watches open ({} refused); +{} MB",
        before >> 20,
        during >> 20,
        opened.len(),
        refused.len(),
        (during.saturating_sub(before)) >> 20
    );
    assert_eq!(opened.len(), MAX_WATCHES, "{:?}", refused.first());
    assert!(
        opened.iter().all(|&n| n == TASKS),
        "every snapshot is whole"
    );
    assert_eq!(refused.len(), WATCHES - MAX_WATCHES);
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("{MAX_WATCHES} open WatchTasks streams")),
            "{status:?}"
        );
    }
    assert!(
        during < before + 100 * 1024 * 1024,
        "the manager grew from {} MB to {} MB",
        before >> 20,
        during >> 20
    );
    // A normal user is still served while every watch place is taken.
    let started = std::time::Instant::now();
    let status = cluster.ctl().ok(&["status"]);
    assert!(status.contains("watched"), "{status}");
    eprintln!(
        "cubectl status with the watches held: {:?}",
        started.elapsed()
    );

    // Closed watches free their places.
    drop(held_tx);
    rt.block_on(async {
        while held_rx.try_recv().is_ok() {}
        let mut client = channels[0].clone();
        let opened = wait_open(&mut client).await;
        assert!(opened, "a watch opens once the others closed");
    });
}

/// Tries to open a watch for up to 5 s (closed streams free their places asynchronously).
async fn wait_open(client: &mut ManagerServiceClient<cube::tls::AuthChannel>) -> bool {
    for _ in 0..50 {
        match client.watch_tasks(pb::WatchTasksRequest::default()).await {
            Ok(_) => return true,
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    false
}

/// How many tasks the slow-watcher test submits: more changes than the manager's buffer
/// (16,384) and than the client's HTTP/2 window holds.
const FLOOD: usize = 20_000;

/// A manager's memory growth over a flood of [`FLOOD`] tasks of 1 KB.
async fn flood(client: &mut ManagerServiceClient<cube::tls::AuthChannel>, pid: u32) -> u64 {
    let before = rss(pid);
    let spec = sized_spec("flood", &["true"], 1000);
    submit_many(client, &spec, FLOOD).await;
    rss(pid).saturating_sub(before)
}

/// 20 watchers that stop reading while 20,000 tasks are submitted do not make the manager hold
/// the changes for each of them: every stream ends with UNAVAILABLE saying it read too slowly,
/// and the manager grows no more than one without watchers does over the same flood, but for
/// its one shared buffer of changes.
///
/// Each watcher has its own connection, as 20 slow clients would. Twenty unread streams on one
/// connection, read one after the other, would stall the client itself: HTTP/2's connection
/// window is shared, the data of the streams not yet read holds all of it, and the server can
/// send nothing more on the stream being read (after the idle timeout the server then closes
/// the connection, whose rpcs have all ended on its side).
#[test]
fn watchers_that_do_not_read_are_cut_off() {
    const SLOW: usize = 20;
    let rt = runtime();
    // The same flood with no watcher: what the tasks themselves cost.
    let alone = Cluster::builder().start();
    let baseline = rt.block_on(async {
        let mut client = alone.client().await;
        flood(&mut client, alone.manager().pid()).await
    });
    drop(alone);
    let cluster = Cluster::builder().start();
    let pid = cluster.manager().pid();
    rt.block_on(async {
        let mut watches = Vec::new();
        for _ in 0..SLOW {
            let mut watch = cluster
                .client()
                .await
                .watch_tasks(pb::WatchTasksRequest::default())
                .await
                .unwrap()
                .into_inner();
            assert!(watch.message().await.unwrap().unwrap().synced);
            watches.push(watch);
        }
        // The flood on its own connection: the unread watches fill their connections'
        // HTTP/2 windows, which answers on those connections would wait behind.
        let mut submitter = cluster.client().await;
        let grown = flood(&mut submitter, pid).await;
        let mut delivered = Vec::new();
        for watch in &mut watches {
            let mut received = 0;
            let status = loop {
                match watch.message().await {
                    Ok(Some(_)) => received += 1,
                    Ok(None) => panic!("the watch ended without a status after {received}"),
                    Err(status) => break status,
                }
            };
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(status.message().contains("read too slowly"), "{status:?}");
            assert!(received < FLOOD, "{received}");
            delivered.push(received);
        }
        eprintln!(
            "{SLOW} slow watchers: {delivered:?} changes delivered before UNAVAILABLE; the manager \
             grew {} MB over the flood (without watchers: {} MB)",
            grown >> 20,
            baseline >> 20
        );
        // While anyone watches, the manager keeps its one shared buffer of the last 16,384
        // changes (about 25 MB of these tasks), whatever the number or speed of watchers: 20
        // watchers that each held what they did not read would cost 20 times that.
        assert!(
            grown < baseline + 60 * 1024 * 1024,
            "the slow watchers cost the manager {} MB more",
            grown.saturating_sub(baseline) >> 20
        );
        // The manager goes on: a new watch opens and syncs.
        let mut again = submitter
            .watch_tasks(pb::WatchTasksRequest {
                state: pb::TaskState::Completed as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(again.message().await.unwrap().unwrap().synced);
    });
}

/// An Exec worker holding 80 tasks of about 60 KB (4.8 MB, over the 4 MiB every client
/// accepts): the manager's ListTasks comes in pages under the answer limit, the worker's full
/// listing too, and a restarted manager, which needs that full listing, sees every task
/// RUNNING.
#[test]
fn large_listings_come_in_pages() {
    const TASKS: usize = 80;
    let mut cluster = Cluster::builder().workers(1).runtime(Runtime::Exec).start();
    let rt = runtime();
    rt.block_on(async {
        let mut client = cluster.client().await;
        submit_many(
            &mut client,
            &sized_spec("big", &["sleep", "120"], 60_000),
            TASKS,
        )
        .await;
    });
    let running = |cluster: &Cluster| {
        rt.block_on(async {
            let mut client = cluster.client().await;
            let mut all = Vec::new();
            let mut token = String::new();
            let mut pages = 0;
            loop {
                let page = client
                    .list_tasks(pb::ListTasksRequest {
                        page_size: 1000,
                        page_token: token,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let bytes: usize = page.tasks.iter().map(prost::Message::encoded_len).sum();
                assert!(bytes <= MAX_ANSWER_BYTES, "a page of {bytes} bytes");
                pages += 1;
                all.extend(page.tasks);
                token = page.next_page_token;
                if token.is_empty() {
                    break;
                }
            }
            assert!(pages > 1, "4.8 MB of tasks come in more than one page");
            let running = all
                .iter()
                .filter(|t| t.state() == pb::TaskState::Running)
                .count();
            (all.len() == TASKS && running == TASKS).then_some(())
        })
    };
    wait_for(Duration::from_secs(60), "every task RUNNING", || {
        running(&cluster)
    });

    // The worker's own full listing: pages under the limit that add up to every task.
    let mut worker = cluster.worker_client(0);
    let first = worker.list_since(0, "");
    assert!(first.complete);
    assert!(!first.next_page_token.is_empty(), "the full listing is cut");
    let mut listed = first.tasks.len();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = worker.list_page(&token);
        listed += page.tasks.len();
        token = page.next_page_token;
    }
    assert_eq!(listed, TASKS);

    // A restarted manager starts from a full listing of the worker.
    cluster.restart_manager();
    wait_for(Duration::from_secs(30), "every task RUNNING again", || {
        running(&cluster)
    });
    let log = cluster.manager().logs();
    assert!(
        !log.contains("decoded message length too large"),
        "a poll failed on the size limit:\n{log}"
    );
}
