//! Whether Docker answers: a test that needs it goes on, fails under `CUBE_REQUIRE_DOCKER=1`,
//! or says loudly that it skips.

use std::process::{Command, Stdio};

use super::image::ensure_test_image;

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

/// Call first in a test that needs Docker: true when it can go on (the test image is then
/// there). Without Docker it fails under `CUBE_REQUIRE_DOCKER=1` and otherwise says loudly
/// that it skips.
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

/// `docker inspect -f FORMAT ID`, trimmed (empty when there is no such object).
pub fn docker_inspect(format: &str, id: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
