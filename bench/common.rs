//! What the process-level benchmarks share: starting the release `cube-manager` and
//! `cube-worker` binaries on 127.0.0.1:0, reading a process's resident memory, killing the
//! Exec runtime's task process groups that a benchmark left behind, and recording a table in
//! `bench/RESULTS.md` through `bench/record.sh`.

#![allow(dead_code)] // each benchmark uses a different part of this module

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// How long a server may take to print its `listening on` line: a release binary on a loaded
/// 2-core machine opens its store in well under this.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A server process of this benchmark; killed (SIGKILL) when dropped.
pub struct Server {
    /// The child process.
    pub child: Child,
    /// `http://ADDR` it listens on.
    pub url: String,
    /// `ADDR` alone.
    pub addr: String,
    /// Lines it wrote to stderr, for benchmarks that read its debug log.
    pub stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `binary` with `args` (plus `env`) and waits for its `listening on` line.
    pub fn start(binary: &str, args: &[String], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            // `cargo bench` sets this for the benchmark's own sake; the release binaries need
            // only system libraries and a deployed worker has no such path. Exec tasks inherit
            // the worker's environment, and with it every task's dynamic loader would first
            // search these four directories for libc.
            .env_remove("LD_LIBRARY_PATH");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{binary}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (addr_tx, addr_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = addr_tx.send(addr.trim().to_string());
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let (err_tx, err_rx) = mpsc::channel();
        let mut copy = log_copy(binary, args);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = copy.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                if err_tx.send(line).is_err() {
                    // Nobody reads any more: keep draining so the child never blocks.
                    continue;
                }
            }
        });
        let addr = addr_rx
            .recv_timeout(START_TIMEOUT)
            .unwrap_or_else(|_| panic!("{binary} did not print `listening on`"));
        Server {
            child,
            url: format!("http://{addr}"),
            addr,
            stderr: err_rx,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit (a clean shutdown: the store is closed).
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }

    /// Sends SIGKILL (a machine dying) and reaps the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With `CUBE_BENCH_LOGS=DIR`, a file `DIR/<name>.log` that gets a copy of the server's
/// stderr (its log), named after its `--name` or its binary; appended to, so a restarted
/// server continues its file.
fn log_copy(binary: &str, args: &[String]) -> Option<std::fs::File> {
    let dir = PathBuf::from(std::env::var_os("CUBE_BENCH_LOGS")?);
    let name = args
        .iter()
        .position(|a| a == "--name")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| {
            Path::new(binary)
                .file_name()
                .map_or("server".into(), |n| n.to_string_lossy().into_owned())
        });
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map_err(|e| eprintln!("CUBE_BENCH_LOGS: {}: {e}", dir.display()))
        .ok()
}

/// The release manager binary (cargo builds it for benchmarks).
pub const MANAGER: &str = env!("CARGO_BIN_EXE_cube-manager");
/// The release worker binary.
pub const WORKER: &str = env!("CARGO_BIN_EXE_cube-worker");

/// Starts an Exec-runtime worker named `name` with its store under `root`; `extra` flags
/// follow (e.g. `--manager URL`).
pub fn start_worker(root: &Path, name: &str, extra: &[String]) -> Server {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--name".into(),
        name.into(),
        "--runtime".into(),
        "exec".into(),
        "--data-dir".into(),
        root.join(name).display().to_string(),
    ];
    args.extend_from_slice(extra);
    Server::start(WORKER, &args, &[])
}

/// Flushes the page cache's dirty blocks to disk. The benchmarks create and delete tens of
/// thousands of files; on an ext4 without a journal, inodes deleted in the last minutes whose
/// blocks are still dirty are skipped when new files are made, so a run straight after
/// another's cleanup pays for that cleanup. Called before a measurement, it makes runs
/// comparable.
pub fn settle_disk() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Resident memory (VmRSS) of process `pid` in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The fields of `/proc/<pid>/stat` after "pid (comm) " (the state is index 0); `None` when
/// the process is gone. The command name may hold spaces and parentheses, so the split is at
/// its last `)`.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// CPU time of process `pid` in seconds: its own (user + system), and that of the children it
/// has reaped (for a worker: its tasks' processes).
pub fn cpu_seconds(pid: u32) -> (f64, f64) {
    // Fields 14 to 17 of the stat line (utime stime cutime cstime) are indices 11 to 14.
    let ticks: Vec<f64> = stat_fields(pid as i32)
        .unwrap_or_default()
        .iter()
        .skip(11)
        .take(4)
        .map(|t| t.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: sysconf(3) has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    match ticks[..] {
        [u, s, cu, cs] => ((u + s) / hz, (cu + cs) / hz),
        _ => (0.0, 0.0),
    }
}

/// The Exec runtime's shims whose command line names `root` (their exit file lives in a
/// worker data dir under it); each leads its own process group.
fn shims_under(root: &Path) -> Vec<i32> {
    let needle = root.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("cube-shim") && cmdline.contains(&needle) {
            found.push(pid);
        }
    }
    found
}

/// Processes in one of the process groups `groups`.
fn members_of(groups: &[i32]) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        // state ppid pgrp session ...: a zombie (state Z) is gone but for its exit status.
        if fields.first().map(String::as_str) == Some("Z") {
            continue;
        }
        if let Some(group) = fields.get(2).and_then(|s| s.parse::<i32>().ok()) {
            if groups.contains(&group) {
                found.push(pid);
            }
        }
    }
    found
}

/// Kills every task process group the Exec workers under `root` started, and checks that
/// none is left. Returns how many groups it had to kill.
pub fn kill_tasks_under(root: &Path) -> usize {
    let shims = shims_under(root);
    for &pid in &shims {
        // SAFETY: kill(2) has no memory-safety preconditions; -pid names the shim's group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !members_of(&shims).is_empty() || !shims_under(root).is_empty() {
        assert!(
            Instant::now() < deadline,
            "task processes survive: {:?}",
            members_of(&shims)
        );
        for &pid in &shims_under(root) {
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    shims.len()
}

/// Kills the task process groups under its directory when dropped, so a benchmark that
/// panics half-way leaves no task processes behind (declare it before the servers, so they
/// are killed first).
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in shims_under(&self.0) {
            // SAFETY: kill(2) has no memory-safety preconditions; -pid names the shim's group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

/// "N cores, M GiB" of this machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_string();
    format!(
        "{cores} cores, {:.0} GiB, load average {load} at the start",
        kib as f64 / 1024.0 / 1024.0
    )
}

/// Today's date (UTC) as `date -u` prints it.
pub fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Prints `body` and writes it as the section `title` of bench/RESULTS.md.
pub fn record(title: &str, body: &str) {
    println!("\n{body}");
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "bench", "record.sh"]
        .iter()
        .collect();
    let status = Command::new(script).args([title, body]).status().unwrap();
    assert!(status.success(), "record.sh failed");
}

/// The `q` quantile (0..=1) of sorted `values`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// How the control-plane benchmark reaches its cluster: TLS with the admin token as Cube is
/// deployed (the default), or plaintext on loopback (`CUBE_BENCH_TLS=0`, the manager's
/// `--plaintext`), to measure what TLS costs.
pub struct Security {
    /// The manager's data dir, which holds the CA and the manager's certificate.
    pub manager_data: PathBuf,
    /// The admin token; None in plaintext.
    pub token: Option<String>,
}

impl Security {
    /// TLS unless `CUBE_BENCH_TLS=0`; with TLS, the CA and tokens are made in `manager_data`.
    pub fn from_env(manager_data: &Path) -> Security {
        let tls = std::env::var("CUBE_BENCH_TLS").map_or(true, |v| v != "0");
        let token = tls.then(|| {
            let out = Command::new(MANAGER)
                .args(["token", "admin", "--data-dir"])
                .arg(manager_data)
                .output()
                .unwrap();
            assert!(out.status.success(), "cube-manager token: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        });
        Security {
            manager_data: manager_data.to_path_buf(),
            token,
        }
    }

    /// Whether the cluster speaks TLS.
    pub fn tls(&self) -> bool {
        self.token.is_some()
    }

    /// A node certificate for worker `name` in `worker_data/tls` (TLS only).
    pub fn node_cert(&self, name: &str, worker_data: &Path) {
        if !self.tls() {
            return;
        }
        let out = Command::new(MANAGER)
            .args(["node-cert", name, "--out"])
            .arg(worker_data.join("tls"))
            .arg("--data-dir")
            .arg(&self.manager_data)
            .output()
            .unwrap();
        assert!(out.status.success(), "cube-manager node-cert: {out:?}");
    }

    /// The manager's URL for a server listening on `addr`.
    pub fn url(&self, addr: &str) -> String {
        let scheme = if self.tls() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// A client of the manager at `url`.
    pub fn manager(
        &self,
        url: &str,
    ) -> cube::pb::manager_service_client::ManagerServiceClient<cube::tls::AuthChannel> {
        let credentials = cube::client::Credentials {
            token: self.token.clone(),
            ca_pem: None,
        };
        let channel = credentials.channel(url, Duration::from_secs(60)).unwrap();
        cube::pb::manager_service_client::ManagerServiceClient::new(channel)
    }

    /// A client of the worker at `addr`, as the manager (its certificate, with TLS).
    pub fn worker(
        &self,
        addr: &str,
    ) -> cube::pb::worker_service_client::WorkerServiceClient<tonic::transport::Channel> {
        let channel = if self.tls() {
            cube::tls::ClientTls::from_manager_dir(&self.manager_data, true)
                .unwrap()
                .channel(addr, Duration::from_secs(60))
                .unwrap()
        } else {
            cube::grpc::channel(addr, Duration::from_secs(60)).unwrap()
        };
        cube::pb::worker_service_client::WorkerServiceClient::new(channel)
    }
}
