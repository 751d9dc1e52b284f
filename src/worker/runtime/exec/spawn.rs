//! Starting a run: the command looked up on the task's PATH, the run file begun, and the
//! command started through the shim in its own process group; a reaper records the exit of
//! the children this process started.

use std::{collections::HashMap, os::unix::process::CommandExt, path::PathBuf, time::SystemTime};

use super::{
    run_file::{append, container_id, proc_stat, read_exit},
    ExecRuntime,
};
use crate::worker::runtime::{Launch, RuntimeError, RuntimeResult, Started};

/// The shim: `sh -c SHIM cube-shim <run file> <command> <args>...`. It runs the command and
/// records its exit code, even if the worker is gone by then. Only shell builtins follow the
/// command, so a task costs two `exec`s (the shim and the command). One short append is
/// atomic, and the exit line is read only once the shim is gone (see [`super::run_file::alive`]).
const SHIM: &str = r#"f=$1; shift; "$@"; c=$?; echo "exit $c" >> "$f"; exit $c"#;

impl ExecRuntime {
    /// Whether `program` exists on `path`: the check that turns a typo into a clear error
    /// before anything is started (the shim's `sh` does the real lookup). Where a name was
    /// found is remembered and checked first (one `stat` instead of one per PATH entry).
    pub(super) fn found(&self, program: &str, path: &str) -> bool {
        let key = (program.to_string(), path.to_string());
        let known = self
            .inner
            .found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if known.is_some_and(|file| file.is_file()) {
            return true;
        }
        match resolve(program, path) {
            Some(file) => {
                self.inner
                    .found
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, file);
                true
            }
            None => {
                self.inner
                    .found
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&key);
                false
            }
        }
    }

    /// Starts one run of a task (the body of [`Runtime::start`](crate::worker::runtime::Runtime::start)).
    pub(super) fn spawn(&self, launch: &Launch) -> RuntimeResult<Started> {
        let spec = &launch.spec;
        let argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
        let Some(program) = argv.first() else {
            return Err(RuntimeError::Invalid("the Exec runtime needs a command"));
        };
        let env: HashMap<String, String> = spec.env.clone().into_iter().collect();
        if !self.found(program, &search_path(&env)) {
            return Err(RuntimeError::NotFound {
                what: "command",
                name: program.clone(),
            });
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
                    .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
                open_run()
            }
            opened => opened,
        }
        .and_then(|file| file.set_len(0).map(|()| file))
        .map_err(|e| RuntimeError::io(format!("creating {}", run_file.display()), e))?;
        let open = |kind: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.file(id, kind))
                .map_err(|e| RuntimeError::io(format!("opening the task's {kind} file"), e))
        };
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SHIM)
            .arg("cube-shim")
            .arg(&run_file)
            .args(&argv)
            .env_clear()
            .env("PATH", TASK_PATH)
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
            .map_err(|e| RuntimeError::io(format!("starting {program:?}"), e))?;
        let pid = child
            .id()
            .ok_or(RuntimeError::Unexpected("the process exited at once"))?
            as i32;
        let start = proc_stat(pid).map(|(s, _)| s).unwrap_or(0);
        std::io::Write::write_all(&mut record, format!("pid {pid} {start}\n").as_bytes())
            .map_err(|e| RuntimeError::io("writing the run file", e))?;
        drop(record);
        let container_id = container_id(pid);
        self.inner
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(container_id.clone(), id);
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(pid);
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
            inner
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&pid);
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
}

/// The PATH of a task that sets none. A task gets its own env and this, never the worker's
/// env (which may hold the worker's secrets, DOCKER_HOST or a token), as Nomad's exec does.
pub(super) const TASK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The PATH a task's command is looked up in: its own, else [`TASK_PATH`].
fn search_path(env: &HashMap<String, String>) -> String {
    env.get("PATH").cloned().unwrap_or_else(|| TASK_PATH.into())
}

/// Finds `program` the way a shell would, so a missing command is reported at start.
fn resolve(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.exists().then_some(path);
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
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
        assert_eq!(
            runtime
                .inner
                .found
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[&key],
            bin.join("tool")
        );
        assert!(runtime.found("tool", &path));
        std::fs::remove_file(bin.join("tool")).unwrap();
        assert!(!runtime.found("tool", &path));
        assert!(
            !runtime.found("tool", "/no/such/dir"),
            "another PATH, another answer"
        );
    }
}
