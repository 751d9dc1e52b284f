//! The Exec runtime: a task's `command ++ args` as a child process (like Nomad's raw_exec), for
//! hosts without Docker and for benchmarks of the control plane.
//!
//! # Surviving a worker restart
//!
//! Each task has three files in `<data dir>/exec/`: `<task id>.out` and `<task id>.err` (its
//! output, appended across runs) and `<task id>.run`, the record of the current run: a line
//! `pid <pid> <start>` (the process id and its kernel start time, so a reused pid is never
//! mistaken for the task) and, once it ended, a line `exit <code>`. The process is started
//! through a tiny `sh` shim in its own process group: the shim runs the command, then appends
//! its exit code to the run file. Both lines are appended, in whichever order they come (a
//! short task can end before the worker writes its pid), so no run needs a new file beyond
//! its first: creating files (inodes) was the largest cost of a short task. So when the worker dies, its tasks go on running, and a task that exits
//! while the worker is down still leaves its exit code behind; the restarted worker adopts the
//! process by its pid file instead of starting a second copy. A task killed by a signal while
//! the worker is down (the shim dies with it) leaves no code: it is reported as lost.
//!
//! Stop sends SIGTERM to the process group, waits the grace period, then SIGKILLs the group.

use std::{
    collections::{HashMap, HashSet},
    io::{Read, Seek, SeekFrom},
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Found, Launch, LogChunk, LogRequest, Observed, Runtime, RuntimeResult, Started};
use crate::{pb, TaskId};

/// The shim: `sh -c SHIM cube-shim <run file> <command> <args>...`. It runs the command and
/// records its exit code, even if the worker is gone by then. Only shell builtins follow the
/// command, so a task costs two `exec`s (the shim and the command). One short append is
/// atomic, and the exit line is read only once the shim is gone (see [`alive`]).
const SHIM: &str = r#"f=$1; shift; "$@"; c=$?; echo "exit $c" >> "$f"; exit $c"#;

/// How often a stop, or a following log reader, looks again.
const POLL: Duration = Duration::from_millis(100);

/// The most a log chunk carries.
const CHUNK: usize = 64 * 1024;

/// Tasks as child processes.
#[derive(Clone)]
pub(crate) struct ExecRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    hints: OnceLock<UnboundedSender<TaskId>>,
    /// Container ids (`pid:<pid>`) this runtime knows, with their task.
    known: Mutex<HashMap<String, TaskId>>,
    /// Pids of children this process waits on (their exit code is written when they are reaped).
    waiting: Mutex<HashSet<i32>>,
    /// Runs that have ended, by task, with the run file's (mtime, length) when it was read: an
    /// ended run does not change until its file does, so `list` (the monitor's sweep, every
    /// few seconds) reads only the files of runs that may still be going.
    ended: Mutex<HashMap<TaskId, (Stamp, Found)>>,
    /// Where a command name was last found, by (name, PATH): see [`ExecRuntime::found`].
    found: Mutex<HashMap<(String, String), PathBuf>>,
}

/// A run file's modification time and length.
type Stamp = (Option<SystemTime>, u64);

impl ExecRuntime {
    /// A runtime keeping its runs under `dir` (`<data dir>/exec`).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                hints: OnceLock::new(),
                known: Mutex::new(HashMap::new()),
                waiting: Mutex::new(HashSet::new()),
                ended: Mutex::new(HashMap::new()),
                found: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether `program` exists on `path`: the check that turns a typo into a clear error
    /// before anything is started (the shim's `sh` does the real lookup). Where a name was
    /// found is remembered and checked first (one `stat` instead of one per PATH entry).
    fn found(&self, program: &str, path: &str) -> bool {
        let key = (program.to_string(), path.to_string());
        let known = self.inner.found.lock().unwrap().get(&key).cloned();
        if known.is_some_and(|file| file.is_file()) {
            return true;
        }
        match resolve(program, path) {
            Some(file) => {
                self.inner.found.lock().unwrap().insert(key, file);
                true
            }
            None => {
                self.inner.found.lock().unwrap().remove(&key);
                false
            }
        }
    }

    /// The path of one of a task's files: `out`, `err` or `run`.
    fn file(&self, id: TaskId, kind: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.{kind}"))
    }

    fn task_of(&self, container_id: &str) -> Option<TaskId> {
        self.inner.known.lock().unwrap().get(container_id).copied()
    }
}

fn pid_of(container_id: &str) -> Option<i32> {
    container_id.strip_prefix("pid:")?.parse().ok()
}

/// A process's start time in clock ticks since boot and whether it is a zombie, from
/// `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0 and field 22 (starttime) index 19.
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// What a run file says: the process and its start time, and the exit code once it ended.
#[derive(Debug, Default, PartialEq)]
struct Run {
    pid: Option<(i32, u64)>,
    exit: Option<i64>,
}

impl Run {
    fn parse(text: &str) -> Run {
        let mut run = Run::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("pid"), Some(pid), Some(start)) => {
                    if let (Ok(pid), Ok(start)) = (pid.parse(), start.parse()) {
                        run.pid = Some((pid, start));
                    }
                }
                (Some("exit"), Some(code), None) => run.exit = code.parse().ok(),
                _ => {}
            }
        }
        run
    }

    /// The run file at `path`; `None` when there is none (no run, or it was forgotten).
    fn read(path: &Path) -> Option<Run> {
        std::fs::read_to_string(path).ok().map(|t| Run::parse(&t))
    }

    /// Whether its process is alive (and is still that process).
    fn alive(&self) -> bool {
        self.pid
            .is_some_and(|(pid, start)| matches!(proc_stat(pid), Some((s, false)) if s == start))
    }
}

/// Whether the process recorded in the run file at `path` is alive.
fn alive(path: &Path) -> bool {
    Run::read(path).is_some_and(|run| run.alive())
}

/// The exit code in the run file at `path`, and when it was written.
fn read_exit(path: &Path) -> Option<(i64, Option<SystemTime>)> {
    let code = Run::read(path)?.exit?;
    let at = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((code, at))
}

/// Appends a line to the run file at `path` (it exists: the run created it).
fn append(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

fn signal_group(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the process
    // group the shim leads (it was started as its leader), so the command's children get the
    // signal too.
    unsafe {
        libc::kill(-pid, signal);
    }
}

/// Finds `program` the way a shell would, so a missing command is reported at start.
/// The PATH a task's command is looked up in: its own, else the worker's, else a default.
fn search_path(env: &HashMap<String, String>) -> String {
    env.get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}

fn resolve(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.exists().then_some(path);
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

impl Runtime for ExecRuntime {
    fn name(&self) -> &'static str {
        "exec"
    }

    async fn ping(&self) -> RuntimeResult<()> {
        Ok(())
    }

    async fn start(&self, launch: &Launch) -> RuntimeResult<Started> {
        let spec = &launch.spec;
        let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
        let Some(program) = argv.first() else {
            return Err("the Exec runtime needs a command".into());
        };
        let env: HashMap<String, String> = spec.env.clone().into_iter().collect();
        if !self.found(program, &search_path(&env)) {
            return Err(format!("command {program:?} not found"));
        }
        let id = launch.id;
        let run_file = self.file(id, "run");
        // Appending, so the pid line written below never overwrites an exit line the shim
        // wrote first; kept open for that line. A new run starts with an empty record (an
        // earlier run's lines are gone).
        let open_run = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&run_file)
        };
        let mut record = match open_run() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = &self.inner.dir;
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                open_run()
            }
            opened => opened,
        }
        .and_then(|file| file.set_len(0).map(|()| file))
        .map_err(|e| format!("creating {}: {e}", run_file.display()))?;
        let open = |kind: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.file(id, kind))
                .map_err(|e| format!("opening the task's {kind} file: {e}"))
        };
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SHIM)
            .arg("cube-shim")
            .arg(&run_file)
            .args(&argv)
            .envs(&env)
            .stdin(std::process::Stdio::null())
            .stdout(open("out")?)
            .stderr(open("err")?);
        // Its own process group: a signal to the worker's group (Ctrl-C, a supervisor's stop)
        // does not reach the task, the task outlives the worker, and a stop signals the
        // command's children too. Unlike a `pre_exec` hook (setsid), this lets std start the
        // process with posix_spawn (vfork-like) instead of fork, which copies the worker's
        // page tables on every start.
        command.process_group(0);
        let mut child = tokio::process::Command::from(command)
            .spawn()
            .map_err(|e| format!("starting {program:?}: {e}"))?;
        let pid = child.id().ok_or("the process exited at once")? as i32;
        let start = proc_stat(pid).map(|(s, _)| s).unwrap_or(0);
        std::io::Write::write_all(&mut record, format!("pid {pid} {start}\n").as_bytes())
            .map_err(|e| format!("writing the run file: {e}"))?;
        drop(record);
        let container_id = format!("pid:{pid}");
        self.inner
            .known
            .lock()
            .unwrap()
            .insert(container_id.clone(), id);
        self.inner.waiting.lock().unwrap().insert(pid);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            if read_exit(&run_file).is_none() {
                use std::os::unix::process::ExitStatusExt;
                let code = match status {
                    Ok(s) => s
                        .code()
                        .map(i64::from)
                        .or_else(|| s.signal().map(|sig| 128 + i64::from(sig))),
                    Err(_) => None,
                };
                let _ = append(&run_file, &format!("exit {}\n", code.unwrap_or(-1)));
            }
            inner.waiting.lock().unwrap().remove(&pid);
            if let Some(hints) = inner.hints.get() {
                let _ = hints.send(id);
            }
        });
        Ok(Started {
            container_id,
            ports: spec.ports.clone(),
            started_at: SystemTime::now(),
        })
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> RuntimeResult<Option<i64>> {
        let Some(pid) = pid_of(container_id) else {
            return Ok(None);
        };
        let Some(id) = self.task_of(container_id) else {
            return Ok(None);
        };
        let run_file = self.file(id, "run");
        // The run's pid line does not change while it runs: read it once, then only /proc.
        let run = Run::read(&run_file).unwrap_or_default();
        let running = || run.alive() || self.inner.waiting.lock().unwrap().contains(&pid);
        if run.alive() {
            signal_group(pid, libc::SIGTERM);
            let deadline = tokio::time::Instant::now() + grace;
            while running() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
            }
            if run.alive() {
                signal_group(pid, libc::SIGKILL);
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while running() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(read_exit(&run_file).map(|(code, _)| code))
    }

    async fn remove(&self, container_id: &str) -> RuntimeResult<()> {
        if let Some(pid) = pid_of(container_id) {
            if let Some(id) = self.task_of(container_id) {
                let run_file = self.file(id, "run");
                if alive(&run_file) {
                    signal_group(pid, libc::SIGKILL);
                }
                // Keep the output files (logs); forget the run.
                let _ = std::fs::remove_file(run_file);
                self.inner.ended.lock().unwrap().remove(&id);
            }
        }
        self.inner.known.lock().unwrap().remove(container_id);
        Ok(())
    }

    async fn inspect(&self, container_id: &str) -> RuntimeResult<Observed> {
        let (Some(pid), Some(id)) = (pid_of(container_id), self.task_of(container_id)) else {
            return Ok(Observed::Missing);
        };
        let run_file = self.file(id, "run");
        let Some(run) = Run::read(&run_file).filter(|r| r.pid.map(|(p, _)| p) == Some(pid)) else {
            return Ok(Observed::Missing);
        };
        if run.alive() || self.inner.waiting.lock().unwrap().contains(&pid) {
            let started_at = std::fs::metadata(&run_file).and_then(|m| m.modified()).ok();
            return Ok(Observed::Running { started_at });
        }
        // Read again: the exit line may have been appended since (the shim is gone now).
        Ok(match read_exit(&run_file) {
            Some((code, finished_at)) => Observed::Exited {
                code: Some(code),
                finished_at,
            },
            None => Observed::Missing,
        })
    }

    async fn list(&self) -> RuntimeResult<Vec<Found>> {
        let entries = match std::fs::read_dir(&self.inner.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("reading {}: {e}", self.inner.dir.display())),
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(stem) = name
                .to_string_lossy()
                .strip_suffix(".run")
                .map(str::to_owned)
            else {
                continue;
            };
            let Ok(task_id) = TaskId::parse("run file", &stem) else {
                continue;
            };
            let meta = entry.metadata().ok();
            let stamp: Stamp = (
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.as_ref().map_or(0, |m| m.len()),
            );
            if let Some((seen, ended)) = self.inner.ended.lock().unwrap().get(&task_id) {
                if *seen == stamp {
                    found.push(ended.clone());
                    continue;
                }
            }
            let path = entry.path();
            let Some(run) = Run::read(&path) else {
                continue;
            };
            let Some((pid, _)) = run.pid else {
                continue;
            };
            let container_id = format!("pid:{pid}");
            self.inner
                .known
                .lock()
                .unwrap()
                .insert(container_id.clone(), task_id);
            let created = stamp
                .0
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            let one = Found {
                task_id,
                running: run.alive() || self.inner.waiting.lock().unwrap().contains(&pid),
                container_id,
                created,
            };
            if !one.running && run.exit.is_some() {
                let mut ended = self.inner.ended.lock().unwrap();
                ended.insert(task_id, (stamp, one.clone()));
            }
            found.push(one);
        }
        Ok(found)
    }

    async fn watch(&self, hints: UnboundedSender<TaskId>, cancel: CancellationToken) {
        let _ = self.inner.hints.set(hints);
        cancel.cancelled().await;
    }

    fn logs(
        &self,
        task_id: TaskId,
        _container_id: &str,
        request: LogRequest,
    ) -> BoxStream<'static, RuntimeResult<LogChunk>> {
        let run_file = self.file(task_id, "run");
        let mut streams = Vec::new();
        if request.stdout {
            streams.push(follow_file(
                self.file(task_id, "out"),
                run_file.clone(),
                pb::LogStream::Stdout,
                request,
            ));
        }
        if request.stderr {
            streams.push(follow_file(
                self.file(task_id, "err"),
                run_file,
                pb::LogStream::Stderr,
                request,
            ));
        }
        futures::stream::select_all(streams).boxed()
    }

    async fn exec(&self, _container_id: &str, command: &[String]) -> RuntimeResult<i64> {
        let Some((program, args)) = command.split_first() else {
            return Err("empty command".into());
        };
        let status = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| format!("running {program:?}: {e}"))?;
        Ok(status.code().map_or(-1, i64::from))
    }

    async fn address(&self, _container_id: &str, port: u32) -> RuntimeResult<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], port as u16)))
    }
}

/// The byte offset where the last `lines` lines of `file` begin.
fn tail_offset(file: &mut std::fs::File, lines: u32) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut pos = len;
    let mut seen = 0u32;
    let mut buf = vec![0u8; 8192];
    // A final newline ends the last line; it does not start another.
    let mut skip_last = true;
    while pos > 0 {
        let n = (pos as usize).min(buf.len());
        pos -= n as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..n])?;
        for i in (0..n).rev() {
            if buf[i] == b'\n' {
                if skip_last && pos + i as u64 == len - 1 {
                    skip_last = false;
                    continue;
                }
                seen += 1;
                if seen == lines {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
    }
    Ok(0)
}

/// Streams a run's output file: from the tail offset to its end, then (with follow) what is
/// appended, reading only new bytes, until the process is gone and the file is drained.
fn follow_file(
    path: PathBuf,
    run_file: PathBuf,
    stream: pb::LogStream,
    request: LogRequest,
) -> BoxStream<'static, RuntimeResult<LogChunk>> {
    struct State {
        file: Option<std::fs::File>,
        path: PathBuf,
        run_file: PathBuf,
        done: bool,
    }
    let name = match stream {
        pb::LogStream::Stderr => "stderr",
        _ => "stdout",
    };
    let init = State {
        file: None,
        path,
        run_file,
        done: false,
    };
    futures::stream::unfold(init, move |mut state| async move {
        if state.done {
            return None;
        }
        if state.file.is_none() {
            let mut file = match std::fs::File::open(&state.path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return None;
                }
                Err(e) => {
                    state.done = true;
                    return Some((Err(format!("reading the task's {name}: {e}")), state));
                }
            };
            let start = if request.tail > 0 {
                tail_offset(&mut file, request.tail)
            } else {
                Ok(0)
            };
            if let Err(e) = start.and_then(|s| file.seek(SeekFrom::Start(s))) {
                state.done = true;
                return Some((Err(format!("reading the task's {name}: {e}")), state));
            }
            state.file = Some(file);
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            // Whether the process was running before this read: if it was not, an empty read
            // means the output is complete.
            let was_running = request.follow && alive(&state.run_file);
            let file = state.file.as_mut().expect("opened above");
            match file.read(&mut buf) {
                Ok(0) if was_running => tokio::time::sleep(POLL).await,
                Ok(0) => return None,
                Ok(n) => {
                    buf.truncate(n);
                    return Some((Ok((stream, Bytes::from(buf))), state));
                }
                Err(e) => {
                    state.done = true;
                    return Some((Err(format!("reading the task's {name}: {e}")), state));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command found once is checked where it was found; one removed since is not found.
    #[test]
    fn found_remembers_where_a_command_was_and_notices_it_gone() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = ExecRuntime::new(dir.path().join("exec"));
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let path = format!("/no/such/dir:{}", bin.display());
        assert!(!runtime.found("tool", &path));
        std::fs::write(bin.join("tool"), "").unwrap();
        assert!(runtime.found("tool", &path));
        let key = ("tool".to_string(), path.clone());
        assert_eq!(runtime.inner.found.lock().unwrap()[&key], bin.join("tool"));
        assert!(runtime.found("tool", &path));
        std::fs::remove_file(bin.join("tool")).unwrap();
        assert!(!runtime.found("tool", &path));
        assert!(
            !runtime.found("tool", "/no/such/dir"),
            "another PATH, another answer"
        );
    }

    /// `list` remembers ended runs, and forgets one as soon as the task runs again.
    #[tokio::test]
    async fn list_sees_a_restarted_run_of_an_ended_task() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = ExecRuntime::new(dir.path().join("exec"));
        let id = TaskId::new();
        let launch = |command: &[&str]| Launch {
            id,
            spec: pb::TaskSpec {
                command: command.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            attempt: 0,
        };
        let first = runtime.start(&launch(&["true"])).await.unwrap();
        let ended = loop {
            let found = runtime.list().await.unwrap();
            if found.iter().all(|f| !f.running) && runtime.inner.ended.lock().unwrap().len() == 1 {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(ended[0].container_id, first.container_id);
        // Listed again from what it remembers.
        let again = runtime.list().await.unwrap();
        assert_eq!(again[0].container_id, first.container_id);
        assert!(!again[0].running);

        let second = runtime.start(&launch(&["sleep", "30"])).await.unwrap();
        let found = runtime.list().await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].container_id, second.container_id);
        assert!(found[0].running);
        runtime.remove(&second.container_id).await.unwrap();
    }

    #[test]
    fn run_file_lines_are_read_in_either_order() {
        let both = Run {
            pid: Some((42, 7)),
            exit: Some(3),
        };
        assert_eq!(Run::parse("pid 42 7\nexit 3\n"), both);
        assert_eq!(Run::parse("exit 3\npid 42 7\n"), both);
        assert_eq!(Run::parse("pid 42 7\n").exit, None);
        // A line cut short (the shim killed while writing) is ignored.
        assert_eq!(Run::parse("pid 42 7\nexit"), Run::parse("pid 42 7\n"));
        assert_eq!(Run::parse(""), Run::default());
    }

    #[test]
    fn tail_offset_finds_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        assert_eq!(tail_offset(&mut file, 1).unwrap(), 8);
        assert_eq!(tail_offset(&mut file, 2).unwrap(), 4);
        assert_eq!(tail_offset(&mut file, 5).unwrap(), 0);
    }
}
