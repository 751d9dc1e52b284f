//! A finished task's last output, kept when its container is removed, so `cubectl logs` after
//! a stop still shows what the task wrote.
//!
//! Docker's logs go with the container; before the worker removes one, it copies the tail of
//! each stream ([`KEPT_BYTES`] at most) to `<data dir>/logs/<task id>.out` and `.err`. They
//! are overwritten by the next run's and live as long as the task's record on this worker.
//! A runtime whose output outlives its containers (Exec's output files) needs none of this:
//! see [`Runtime::keeps_logs`](super::runtime::Runtime::keeps_logs).

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};

use super::runtime::{LogChunk, LogRequest, Runtime, RuntimeError, RuntimeResult};
use crate::{pb, TaskId};

/// The most kept of each stream of a finished task: the end of its output, where the reason
/// it ended usually is, at 128 KiB a task on disk at most.
pub(crate) const KEPT_BYTES: usize = 64 * 1024;

/// How many lines the copy asks the runtime for: bounds what is read (Docker splits lines at
/// 16 KiB), while the kept tail is cut to [`KEPT_BYTES`] bytes anyway.
const READ_LINES: u32 = 2000;

/// Where finished tasks' output is kept.
#[derive(Debug, Clone)]
pub(crate) struct KeptLogs {
    dir: PathBuf,
}

impl KeptLogs {
    /// Kept output under `<data_dir>/logs`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("logs"),
        }
    }

    fn file(&self, id: TaskId, stream: pb::LogStream) -> PathBuf {
        let kind = match stream {
            pb::LogStream::Stderr => "err",
            _ => "out",
        };
        self.dir.join(format!("{id}.{kind}"))
    }

    /// Removes a task's kept output (the task is forgotten).
    pub fn forget(&self, id: TaskId) {
        for stream in [pb::LogStream::Stdout, pb::LogStream::Stderr] {
            let _ = std::fs::remove_file(self.file(id, stream));
        }
    }

    /// Copies the tail of a container's output before it is removed. Best effort: a failure
    /// is logged, and the removal goes on (logs must never keep a container alive).
    pub async fn keep<R: Runtime>(&self, runtime: &R, id: TaskId, container_id: &str) {
        if runtime.keeps_logs() || container_id.is_empty() {
            return;
        }
        if let Err(e) = self.copy(runtime, id, container_id).await {
            tracing::warn!(task_id = %id, error = %e, "keeping the task's last output failed");
        }
    }

    async fn copy<R: Runtime>(
        &self,
        runtime: &R,
        id: TaskId,
        container_id: &str,
    ) -> RuntimeResult<()> {
        let request = LogRequest {
            follow: false,
            tail: READ_LINES,
            stdout: true,
            stderr: true,
            ..LogRequest::default()
        };
        let mut out = Tail::default();
        let mut err = Tail::default();
        let mut logs = runtime.logs(id, container_id, request);
        while let Some(chunk) = logs.next().await {
            let (stream, data) = chunk?;
            match stream {
                pb::LogStream::Stderr => err.push(&data),
                _ => out.push(&data),
            }
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| RuntimeError::io("creating the kept logs' folder", e))?;
        for (stream, mut tail) in [(pb::LogStream::Stdout, out), (pb::LogStream::Stderr, err)] {
            std::fs::write(self.file(id, stream), tail.0.make_contiguous())
                .map_err(|e| RuntimeError::io("keeping the task's last output", e))?;
        }
        Ok(())
    }

    /// The kept output as a log stream (the last `tail` lines when asked), or `None` when
    /// nothing was kept of this task.
    pub fn read(
        &self,
        id: TaskId,
        request: LogRequest,
    ) -> Option<BoxStream<'static, RuntimeResult<LogChunk>>> {
        let mut chunks = Vec::new();
        let mut any = false;
        for (wanted, stream) in [
            (request.stdout, pb::LogStream::Stdout),
            (request.stderr, pb::LogStream::Stderr),
        ] {
            let Ok(data) = std::fs::read(self.file(id, stream)) else {
                continue;
            };
            any = true;
            let data = last_lines(&data, request.tail);
            if wanted && !data.is_empty() {
                chunks.push(Ok((stream, Bytes::copy_from_slice(data))));
            }
        }
        any.then(|| futures::stream::iter(chunks).boxed())
    }
}

/// The last [`KEPT_BYTES`] of a stream.
#[derive(Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.0.extend(data);
        let extra = self.0.len().saturating_sub(KEPT_BYTES);
        self.0.drain(..extra);
    }
}

/// The last `lines` lines of `data` (all of it for 0).
fn last_lines(data: &[u8], lines: u32) -> &[u8] {
    if lines == 0 {
        return data;
    }
    // A final newline ends the last line; it does not start another.
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == lines {
                return &data[i + 1..];
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_only_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; KEPT_BYTES]);
        tail.push(b"end\n");
        assert_eq!(tail.0.len(), KEPT_BYTES);
        let kept: Vec<u8> = tail.0.iter().copied().collect();
        assert!(kept.ends_with(b"aend\n"));
    }

    #[test]
    fn last_lines_finds_the_tail() {
        assert_eq!(last_lines(b"one\ntwo\nthree\n", 1), b"three\n");
        assert_eq!(last_lines(b"one\ntwo\nthree\n", 2), b"two\nthree\n");
        assert_eq!(last_lines(b"one\ntwo\nthree", 5), b"one\ntwo\nthree");
        assert_eq!(last_lines(b"one\ntwo\n", 0), b"one\ntwo\n");
    }

    /// What was kept is served, per stream as asked; a task with nothing kept has none.
    #[tokio::test]
    async fn kept_output_is_read_back_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let kept = KeptLogs::new(dir.path());
        let id = TaskId::new();
        let all = LogRequest {
            follow: false,
            tail: 0,
            stdout: true,
            stderr: true,
            ..LogRequest::default()
        };
        assert!(kept.read(id, all).is_none());
        std::fs::create_dir_all(&kept.dir).unwrap();
        std::fs::write(kept.file(id, pb::LogStream::Stdout), "out\n").unwrap();
        std::fs::write(kept.file(id, pb::LogStream::Stderr), "err\n").unwrap();
        let only_err = LogRequest {
            stdout: false,
            ..all
        };
        let chunks: Vec<_> = kept.read(id, only_err).unwrap().collect().await;
        assert_eq!(chunks.len(), 1);
        let (stream, data) = chunks[0].as_ref().unwrap();
        assert_eq!((*stream, &data[..]), (pb::LogStream::Stderr, &b"err\n"[..]));
    }
}
