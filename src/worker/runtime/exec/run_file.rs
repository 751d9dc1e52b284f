//! The run file (`<task id>.run`) and the process it names: reading its `pid` and `exit`
//! lines, telling whether that process still lives (and is still that process), and signalling
//! its process group.

use std::{path::Path, time::SystemTime};

/// The container id of the Exec runtime names the process: `pid:<pid>`.
pub(super) fn container_id(pid: i32) -> String {
    format!("pid:{pid}")
}

/// The process a container id names.
pub(super) fn pid_of(container_id: &str) -> Option<i32> {
    container_id.strip_prefix("pid:")?.parse().ok()
}

/// A process's start time in clock ticks since boot and whether it is a zombie, from
/// `/proc/<pid>/stat`.
pub(super) fn proc_stat(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0 and field 22 (starttime) index 19.
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// What a run file says: the process and its start time, and the exit code once it ended.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Run {
    /// The process id and its kernel start time.
    pub pid: Option<(i32, u64)>,
    /// The exit code, once the run ended.
    pub exit: Option<i64>,
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
    pub fn read(path: &Path) -> Option<Run> {
        std::fs::read_to_string(path).ok().map(|t| Run::parse(&t))
    }

    /// Whether its process is alive (and is still that process).
    pub fn alive(&self) -> bool {
        self.pid
            .is_some_and(|(pid, start)| matches!(proc_stat(pid), Some((s, false)) if s == start))
    }
}

/// Whether the process recorded in the run file at `path` is alive.
pub(super) fn alive(path: &Path) -> bool {
    Run::read(path).is_some_and(|run| run.alive())
}

/// The exit code in the run file at `path`, and when it was written.
pub(super) fn read_exit(path: &Path) -> Option<(i64, Option<SystemTime>)> {
    let code = Run::read(path)?.exit?;
    let at = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some((code, at))
}

/// Appends a line to the run file at `path` (it exists: the run created it).
pub(super) fn append(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// Sends `signal` to the process group the shim `pid` leads.
pub(super) fn signal_group(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the process
    // group the shim leads (it was started as its leader), so the command's children get the
    // signal too.
    unsafe {
        libc::kill(-pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn container_ids_name_the_pid() {
        assert_eq!(pid_of(&container_id(42)), Some(42));
        assert_eq!(pid_of("4f2a9c"), None);
    }
}
