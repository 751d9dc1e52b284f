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
//!
//! Here: the runtime and its calls. `spawn` starts a run, `run_file` reads the run file and
//! the process it names, `logs` streams the output files.

mod logs;
mod run_file;
mod spawn;
mod usage;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime},
};

use futures::{stream::BoxStream, StreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use self::run_file::{alive, container_id, pid_of, read_exit, signal_group, Run};
use super::{
    Found, Launch, LogChunk, LogRequest, Observed, Runtime, RuntimeError, RuntimeResult, Started,
};
use crate::{pb, TaskId};

/// How often a stop, or a following log reader, looks again.
const POLL: Duration = Duration::from_millis(100);

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

    /// The path of one of a task's files: `out`, `err` or `run`.
    fn file(&self, id: TaskId, kind: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}.{kind}"))
    }

    /// Whether a child of this worker with `pid` is still waited for (it runs, or has just
    /// exited and is not reaped yet).
    fn reaping(&self, pid: i32) -> bool {
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&pid)
    }

    /// The task of a container id this runtime started or listed.
    fn task_of(&self, container_id: &str) -> Option<TaskId> {
        self.inner
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(container_id)
            .copied()
    }
}

impl Runtime for ExecRuntime {
    fn name(&self) -> &'static str {
        "exec"
    }

    async fn ping(&self) -> RuntimeResult<()> {
        Ok(())
    }

    async fn start(&self, launch: &Launch) -> RuntimeResult<Started> {
        self.spawn(launch)
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
        let running = || run.alive() || self.reaping(pid);
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
                self.inner
                    .ended
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
            }
        }
        self.inner
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(container_id);
        Ok(())
    }

    async fn usage(&self, container_id: &str) -> RuntimeResult<Option<super::Usage>> {
        Ok(run_file::pid_of(container_id).and_then(usage::of_group))
    }

    async fn inspect(&self, container_id: &str) -> RuntimeResult<Observed> {
        let (Some(pid), Some(id)) = (pid_of(container_id), self.task_of(container_id)) else {
            return Ok(Observed::Missing);
        };
        let run_file = self.file(id, "run");
        let Some(run) = Run::read(&run_file).filter(|r| r.pid.map(|(p, _)| p) == Some(pid)) else {
            return Ok(Observed::Missing);
        };
        if run.alive() || self.reaping(pid) {
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
            Err(e) => {
                let action = format!("reading {}", self.inner.dir.display());
                return Err(RuntimeError::io(action, e));
            }
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
            if let Some((seen, ended)) = self
                .inner
                .ended
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&task_id)
            {
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
            let container_id = container_id(pid);
            self.inner
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(container_id.clone(), task_id);
            let created = stamp
                .0
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            let one = Found {
                task_id,
                running: run.alive()
                    || self
                        .inner
                        .waiting
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .contains(&pid),
                container_id,
                created,
            };
            if !one.running && run.exit.is_some() {
                let mut ended = self
                    .inner
                    .ended
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// The output files are kept when a run is removed (and appended to by the next run).
    fn keeps_logs(&self) -> bool {
        true
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
            streams.push(logs::follow_file(
                self.file(task_id, "out"),
                run_file.clone(),
                pb::LogStream::Stdout,
                request,
            ));
        }
        if request.stderr {
            streams.push(logs::follow_file(
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
            return Err(RuntimeError::Invalid("empty command"));
        };
        let status = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", spawn::TASK_PATH)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| RuntimeError::io(format!("running {program:?}"), e))?;
        Ok(status.code().map_or(-1, i64::from))
    }

    async fn address(&self, _container_id: &str, port: u32) -> RuntimeResult<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], port as u16)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            if found.iter().all(|f| !f.running)
                && runtime
                    .inner
                    .ended
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
                    == 1
            {
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
}
