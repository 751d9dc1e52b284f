//! Connections are bounded: thousands of idle ones do not lock a client out and are closed
//! after the handshake timeout, an HTTP/2 connection with no rpc is closed after the idle
//! timeout while one with an open stream is not, and connections past the maximum are closed
//! at once, with a log line. The manager speaks plaintext here (`--plaintext`): these are
//! limits of the transport under TLS, and the tests speak raw HTTP/2.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use common::*;
use cube::pb;

/// The client preface of HTTP/2 and an empty SETTINGS frame: what a gRPC client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// How many descriptors a process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Reads from `socket` until the server closes it (EOF or a reset), for up to `timeout`; the
/// time it took, or None when it stayed open.
fn closed_within(socket: &mut TcpStream, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < timeout {
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match socket.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// 5,000 TCP connections that send nothing: cubectl status still answers within 1 s while
/// they are held, and the manager closes them all after its handshake timeout.
#[test]
fn idle_connections_do_not_lock_clients_out() {
    const IDLE: usize = 5000;
    // This process holds 5,000 sockets too.
    let files = cube::limits::conn::open_files_limit().unwrap();
    assert!(
        files > IDLE + 256,
        "the open-files limit {files} is too low"
    );
    let cluster = Cluster::builder()
        .plaintext()
        .manager_args(&["--handshake-timeout", "20s"])
        .start();
    let pid = cluster.manager().pid();
    cluster.ctl().ok(&["status"]);
    let base = open_fds(pid);

    let opened = Instant::now();
    // In waves of 500, each accepted before the next: more than the listen backlog at once
    // on a loaded machine would leave some connected on the client's side only.
    let addr = cluster.manager().addr.clone();
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE);
    while idle.len() < IDLE {
        idle.extend((0..500).map(|_| TcpStream::connect(&addr).unwrap()));
        // Less a little: cubectl's own connection may still be closing when `base` is read.
        let want = base + idle.len() - 2;
        wait_for(
            Duration::from_secs(10),
            "the manager accepts a wave",
            || (open_fds(pid) >= want).then_some(()),
        );
    }
    let took = opened.elapsed();
    let held = open_fds(pid);
    assert!(held >= base + IDLE - 2, "{held}");

    let started = Instant::now();
    let out = cluster.ctl().ok(&["status"]);
    let answered = started.elapsed();
    eprintln!(
        "{IDLE} idle connections opened in {took:?}; manager fds {base} -> {held}; \
         cubectl status answered in {answered:?}"
    );
    assert!(out.contains("No tasks") || out.contains("ID"), "{out}");
    assert!(
        answered < Duration::from_secs(1),
        "cubectl status took {answered:?}"
    );

    let closing = Instant::now();
    let after = wait_for(
        Duration::from_secs(30),
        "the idle connections closed",
        || {
            let fds = open_fds(pid);
            (fds <= base + 5).then_some(fds)
        },
    );
    eprintln!(
        "idle connections closed {:?} after cubectl answered (handshake timeout 20 s); manager \
         fds back to {after}",
        closing.elapsed()
    );
    // The client side sees each one closed.
    for socket in idle.iter_mut().step_by(500) {
        assert!(closed_within(socket, Duration::from_secs(2)).is_some());
    }
    // And the manager goes on.
    cluster.ctl().ok(&["status"]);
}

/// An HTTP/2 connection that opened no rpc is closed after the idle timeout; a connection
/// with a watch open is not, and the watch still gets changes after the timeout has passed.
#[test]
fn an_idle_connection_is_closed_but_an_open_stream_is_not() {
    let cluster = Cluster::builder()
        .plaintext()
        .manager_args(&["--idle-timeout", "2s"])
        .start();
    let mut raw = TcpStream::connect(&cluster.manager().addr).unwrap();
    raw.write_all(PREFACE).unwrap();
    let closed = closed_within(&mut raw, Duration::from_secs(10)).expect("closed");
    eprintln!("an HTTP/2 connection with no rpc closed after {closed:?} (idle timeout 2 s)");
    assert!(closed >= Duration::from_millis(1800), "{closed:?}");
    assert!(closed < Duration::from_secs(5), "{closed:?}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut watcher = cluster.client().await;
        let mut watch = watcher
            .watch_tasks(pb::WatchTasksRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(watch.message().await.unwrap().unwrap().synced);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut client = cluster.client().await;
        let task = submit(&mut client, exec_spec("after-idle", &["true"])).await;
        let change = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("the watch still delivers")
            .unwrap()
            .unwrap();
        assert_eq!(change.task.unwrap().id, task.id);
    });
}

/// With `--max-connections 20`, a 21st connection is closed at once and logged; once the 20
/// go, clients are served again.
#[test]
fn connections_past_the_maximum_are_closed_at_once() {
    let cluster = Cluster::builder()
        .plaintext()
        .manager_args(&["--max-connections", "20"])
        .start();
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(&cluster.manager().addr).unwrap();
            s.write_all(PREFACE).unwrap();
            s
        })
        .collect();
    // Each of the 20 is answered with the server's SETTINGS: accepted.
    for socket in &mut held {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 9];
        socket.read_exact(&mut buf).unwrap();
        assert_eq!(buf[3], 4, "a SETTINGS frame");
    }
    let mut extra = TcpStream::connect(&cluster.manager().addr).unwrap();
    let closed = closed_within(&mut extra, Duration::from_secs(3)).expect("closed at once");
    assert!(closed < Duration::from_secs(1), "{closed:?}");
    let (code, _, stderr) = cluster.ctl().call(&["status", "--timeout", "2s"]);
    assert_ne!(code, 0, "no place for cubectl either");
    assert!(!stderr.is_empty());
    wait_for(Duration::from_secs(5), "the refusal logged", || {
        cluster
            .manager()
            .logs()
            .contains("connection refused: the server holds its maximum of connections")
            .then_some(())
    });
    drop(held);
    wait_for(Duration::from_secs(5), "cubectl served again", || {
        (cluster.ctl().call(&["status"]).0 == 0).then_some(())
    });
}
