//! An Exec task's cpu time and memory: the sums over the processes of its process group, read
//! from /proc (the group's leader is the task's shim, so its children are counted).

use crate::worker::runtime::Usage;

/// What the process group led by `leader` uses now; `None` when no process is in it.
pub(super) fn of_group(leader: i32) -> Option<Usage> {
    let ticks = clock_ticks();
    let page = page_size();
    let mut found = false;
    let mut usage = Usage::default();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(process) = parse_stat(&stat).filter(|p| p.group == leader) else {
            continue;
        };
        found = true;
        usage.cpu_nanos += (process.utime + process.stime) * 1_000_000_000 / ticks;
        usage.memory_bytes += process.rss_pages * page;
    }
    found.then_some(usage)
}

/// The fields of `/proc/<pid>/stat` that count.
#[derive(Debug, PartialEq, Eq)]
struct Process {
    group: i32,
    utime: u64,
    stime: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`: the fields after the command's closing parenthesis (the
/// command may hold spaces and parentheses), numbered as in proc(5).
fn parse_stat(stat: &str) -> Option<Process> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): field n is rest[n - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Process {
        group: fields.get(5 - 3)?.parse().ok()?,
        utime: field(14)?,
        stime: field(15)?,
        rss_pages: field(24)?,
    })
}

/// Clock ticks a second, the unit of utime and stime.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a configuration value; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Bytes a page, the unit of rss.
fn page_size() -> u64 {
    // SAFETY: sysconf reads a configuration value; it has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_past_the_command() {
        let stat = "4242 (sh -c (x)) S 1 4242 4242 0 -1 4194560 120 0 0 0 37 5 0 0 20 0 1 0 \
                    99 2498560 250 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Process {
                group: 4242,
                utime: 37,
                stime: 5,
                rss_pages: 250,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_group_uses_cpu_and_memory() {
        // SAFETY: getpgrp has no preconditions.
        let group = unsafe { libc::getpgrp() };
        let usage = of_group(group).unwrap();
        assert!(usage.memory_bytes > 0, "{usage:?}");
    }
}
