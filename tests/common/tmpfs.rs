//! A small tmpfs for a test to fill up: mounted in a temp dir of its own, grown with
//! `mount -o remount,size=...`, filled to the last byte with a filler file, and unmounted when
//! dropped. Mounting needs root, as CI has; without it the test fails, saying so.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

/// A mounted tmpfs; unmounted (lazily, in case a killed process still holds it) when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it: `512k`, `4m`).
    pub fn mount(size: &str) -> Tmpfs {
        let dir = super::temp_dir();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Changes its size (growing frees space for whatever filled it).
    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "resizing the tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fills what is left with the file `name`, to the last byte.
    pub fn fill(&self, name: &str) {
        let mut file = std::fs::File::create(self.join(name)).expect("the filler is created");
        let block = vec![0xa5u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs failed: {e}"),
            }
        }
        let _ = file.sync_all();
    }

    /// Removes the filler file `name`: the space it took is free again.
    pub fn unfill(&self, name: &str) {
        std::fs::remove_file(self.join(name)).expect("the filler is removed");
    }

    /// Bytes free on it.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(self.dir.path())
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the free bytes")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
