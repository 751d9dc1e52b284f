//! The image the tests run (DESIGN.md §8): busybox-static imported into Docker, since nothing
//! can be pulled on these machines. Built once per run when it is missing.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::OnceLock,
};

use super::run_ok;

/// The image the tests run: busybox-static imported into Docker.
pub const TEST_IMAGE: &str = "cube-test/busybox:latest";

/// Builds the test image once per run when it is missing: a rootfs with `bin/busybox` and a
/// symlink per applet, `/www/health` for httpd probes, imported with `PATH=/bin`.
pub(crate) fn ensure_test_image() {
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
        let root = super::temp_dir();
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
