//! Where Cube keeps its files when no `--data-dir` is given: the XDG data home, one folder per
//! process, so a manager and workers on one machine never share a store.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

/// The default data dir of a manager: `<data home>/cube/manager`, or `<data home>/cube/dev` with
/// `--dev` (whose embedded worker keeps its store in `dev-worker` inside it).
pub fn manager_data_dir(dev: bool) -> PathBuf {
    cube_dir(if dev { "dev" } else { "manager" })
}

/// The default data dir of the worker called `name`: `<data home>/cube/worker-<name>`.
pub fn worker_data_dir(name: &str) -> PathBuf {
    cube_dir(&format!("worker-{name}"))
}

fn cube_dir(leaf: &str) -> PathBuf {
    data_home(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
        .join("cube")
        .join(leaf)
}

/// The XDG data home: `$XDG_DATA_HOME` when it is an absolute path (the XDG spec says to ignore
/// an empty or relative one), else `$HOME/.local/share`, else the working directory.
fn data_home(xdg_data_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    xdg_data_home
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| home.map(|home| Path::new(&home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_home_follows_xdg() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            data_home(some("/data"), some("/home/a")),
            Path::new("/data")
        );
        assert_eq!(
            data_home(None, some("/home/a")),
            Path::new("/home/a/.local/share")
        );
        assert_eq!(
            data_home(some(""), some("/home/a")),
            Path::new("/home/a/.local/share"),
            "an empty XDG_DATA_HOME is unset"
        );
        assert_eq!(
            data_home(some("rel"), some("/home/a")),
            Path::new("/home/a/.local/share"),
            "a relative XDG_DATA_HOME is ignored"
        );
        assert_eq!(data_home(None, None), Path::new("."));
    }

    #[test]
    fn each_process_has_its_own_folder() {
        assert!(manager_data_dir(false).ends_with("cube/manager"));
        assert!(manager_data_dir(true).ends_with("cube/dev"));
        assert!(worker_data_dir("w1").ends_with("cube/worker-w1"));
    }
}
