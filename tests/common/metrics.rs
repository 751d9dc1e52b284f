//! The Prometheus endpoint of a Cube process as a test reads it: found in its JSON logs,
//! scraped over a plain TCP connection.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use super::{wait_for, Proc};

/// `GET /metrics` over a plain TCP connection; the body, after checking the status line.
pub fn scrape(address: &str) -> String {
    let (status, body) = http_get(address, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    body
}

pub fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head: {response:?}"));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The metrics address a process logged (`metrics endpoint` with its `address` field), from
/// its JSON log lines.
pub fn metrics_address(process: &Proc) -> String {
    wait_for(
        Duration::from_secs(5),
        "the metrics endpoint log line",
        || {
            process.logs().lines().find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                (v["fields"]["message"] == "metrics endpoint")
                    .then(|| v["fields"]["address"].as_str().map(str::to_string))
                    .flatten()
            })
        },
    )
}
