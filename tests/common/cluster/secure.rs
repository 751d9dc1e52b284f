//! A secure test cluster's credentials: the tokens `cube-manager token` prints, node
//! certificates for workers listed with `--workers`, and the admin token of each manager URL,
//! so that cubectl and gRPC clients given only a URL call as admin.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Mutex, OnceLock},
};

use crate::common::{process::bin, run_ok};

/// The tokens of a secure cluster, one per role.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub admin: String,
    pub reader: String,
    pub worker: String,
}

/// `cube-manager token ROLE --data-dir DIR` for every role (which makes the CA).
pub fn tokens(manager_data: &Path) -> Tokens {
    let token = |role: &str| {
        run_ok(
            bin("cube-manager").to_str().unwrap(),
            &["token", role, "--data-dir", manager_data.to_str().unwrap()],
        )
        .trim()
        .to_string()
    };
    Tokens {
        admin: token("admin"),
        reader: token("reader"),
        worker: token("worker"),
    }
}

/// A node certificate for worker `name` in its data dir, unless it has one.
pub fn node_cert(manager_data: &Path, name: &str, worker_data: &Path) {
    let tls = worker_data.join("tls");
    if tls.join("node.pem").exists() {
        return;
    }
    run_ok(
        bin("cube-manager").to_str().unwrap(),
        &[
            "node-cert",
            name,
            "--out",
            tls.to_str().unwrap(),
            "--data-dir",
            manager_data.to_str().unwrap(),
        ],
    );
}

fn known() -> &'static Mutex<HashMap<String, String>> {
    static KNOWN: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    KNOWN.get_or_init(Mutex::default)
}

/// Remembers that the manager at `url` takes `token` as admin.
pub fn remember(url: &str, token: &str) {
    known()
        .lock()
        .unwrap()
        .insert(url.to_string(), token.to_string());
}

/// The admin token of the manager at `url`, if it is a secure test cluster's.
pub fn admin_token(url: &str) -> Option<String> {
    known().lock().unwrap().get(url).cloned()
}
