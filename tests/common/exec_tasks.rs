//! Exec tasks found and killed by their worker's data dir: an Exec task is a process group
//! that outlives its worker by design, so a test's cluster kills what its workers left.

use std::{path::Path, process::Command};

/// Kills the process group of every Exec task whose shim keeps its run file under `root` (an
/// Exec task outlives its worker by design).
pub(crate) fn kill_exec_tasks(root: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let root = root.to_string_lossy();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // `sh -c SHIM cube-shim <run file> <command>...`, the leader of the task's group.
        let ours = args
            .windows(2)
            .any(|w| w[0] == "cube-shim" && w[1].starts_with(root.as_ref()));
        if ours {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .output();
        }
    }
}
