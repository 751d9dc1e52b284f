//! One Cube binary (cube-manager, cube-worker, cubectl) as a child process: started, its
//! announced address read, its log kept, signalled, and killed when dropped.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A Cube binary running as a child process, killed when dropped.
#[derive(Debug)]
pub struct Proc {
    /// The child.
    pub child: Child,
    /// The address it announced (`listening on ADDR`).
    pub addr: String,
    /// Its stderr, collected in the background (logs).
    pub log: Arc<Mutex<String>>,
}

/// The path of one of the crate's binaries, built by cargo for the tests.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "cube-manager" => PathBuf::from(env!("CARGO_BIN_EXE_cube-manager")),
        "cube-worker" => PathBuf::from(env!("CARGO_BIN_EXE_cube-worker")),
        "cubectl" => PathBuf::from(env!("CARGO_BIN_EXE_cubectl")),
        other => panic!("no binary {other}"),
    }
}

impl Proc {
    /// Starts `binary` with `args` and waits (up to 30 s) for it to announce its address.
    pub fn start(binary: &str, args: &[&str]) -> Proc {
        Self::start_with_env(binary, args, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_with_env(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(bin(binary));
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn(cmd, &format!("{binary} {args:?}"))
    }

    /// Starts `cmd` (a Cube binary, possibly behind a wrapper such as `ip netns exec`) and
    /// waits (up to 30 s) for it to announce its address; `what` names it in a failure.
    pub fn spawn(mut cmd: Command, what: &str) -> Proc {
        let asked: Vec<String> = cmd
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !asked.iter().any(|k| k == "CUBE_MANAGER") {
            cmd.env_remove("CUBE_MANAGER");
        }
        if !asked.iter().any(|k| k == "RUST_LOG") {
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var("CUBE_TEST_LOGS").is_ok() {
                    eprintln!("{line}");
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Proc { child, addr, log },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "{what} did not announce its address ({status:?}); its log:\n{}",
                    log.lock().unwrap()
                );
            }
        }
    }

    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (TERM, KILL, STOP, CONT).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status();
    }

    /// SIGKILL, and reap.
    pub fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait up to 15 s for a clean exit; returns whether it exited with 0.
    pub fn terminate(mut self) -> bool {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// What the process logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The resident memory of process `pid`, in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}
