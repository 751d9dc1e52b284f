//! A server's life apart from its log sink: it keeps serving when the reader of its stderr
//! goes away, shuts down cleanly on SIGTERM all the same, and writes no colour codes into a
//! log that is not a terminal.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Starts `cube-manager` on an ephemeral port with `stderr` as its log; returns it with its
/// address once it announced it.
fn manager(data: &std::path::Path, stderr: Stdio) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cube-manager"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn cube-manager");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("cube-manager announces its address")
            .expect("read stdout");
        if let Some(address) = line.strip_prefix("listening on ") {
            break address.trim().to_string();
        }
    };
    // Keep reading stdout, so the manager never blocks on it.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (child, address)
}

/// `cubectl` against the manager at `address` whose data dir is `data`, with its admin token
/// (over TLS): its exit code and output.
fn cubectl(data: &std::path::Path, address: &str, args: &[&str]) -> (i32, String) {
    let token = Command::new(env!("CARGO_BIN_EXE_cube-manager"))
        .args(["token", "admin", "--data-dir"])
        .arg(data)
        .output()
        .expect("cube-manager token admin");
    assert!(token.status.success(), "{token:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_cubectl"))
        .arg("--manager")
        .arg(format!("https://{address}"))
        .env("CUBE_TOKEN", String::from_utf8_lossy(&token.stdout).trim())
        .args(args)
        .output()
        .expect("run cubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// SIGTERM, then the exit status if it came within `within`.
fn terminate(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `cube-manager 2>&1 | tee log`, then the tee dies: every request is still served (each one
/// logs), and SIGTERM still ends the manager with 0 within 2 s.
#[test]
fn a_manager_whose_log_reader_went_away_serves_and_shuts_down() {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_path_buf();
    let (mut child, address) = manager(&dir, Stdio::piped());
    drop(child.stderr.take()); // the reader goes away: every later log write fails (EPIPE)
    for i in 0..5 {
        let (code, out) = cubectl(
            &dir,
            &address,
            &[
                "run",
                "--name",
                &format!("t{i}"),
                "--image",
                "none",
                "--",
                "true",
            ],
        );
        assert_eq!(code, 0, "request {i} after the log pipe closed: {out}");
        let (code, out) = cubectl(&dir, &address, &["status"]);
        assert_eq!(code, 0, "status {i}: {out}");
    }
    let status = terminate(&mut child, Duration::from_secs(2));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
}

/// A log written to a file holds no ANSI escape sequences.
#[test]
fn a_log_in_a_file_has_no_colour_codes() {
    let data = tempfile::tempdir().expect("temp dir");
    let log_path = data.path().join("manager.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let dir = data.path().join("data");
    let (mut child, address) = manager(&dir, Stdio::from(log));
    let (code, out) = cubectl(
        &dir,
        &address,
        &[
            "run",
            "--name",
            "colourless",
            "--image",
            "none",
            "--",
            "true",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let status = terminate(&mut child, Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let text = std::fs::read_to_string(&log_path).expect("read the log");
    assert!(text.contains("task submitted"), "the log has lines: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "no escape sequences in a log file: {text:?}"
    );
}
