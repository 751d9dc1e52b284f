//! A task's output files (`<task id>.out`, `<task id>.err`) as a stream of log chunks: the
//! last lines asked for, then, when following, what is appended until the process is gone.

use std::{
    io::{Read, Seek, SeekFrom},
    path::PathBuf,
};

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};

use super::{run_file::alive, POLL};
use crate::{
    pb,
    worker::runtime::{LogChunk, LogRequest, RuntimeError, RuntimeResult},
};

/// The most a log chunk carries.
const CHUNK: usize = 64 * 1024;

/// The byte offset where the last `lines` lines of `file` begin.
fn tail_offset(file: &mut std::fs::File, lines: u32) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut pos = len;
    let mut seen = 0u32;
    let mut buf = vec![0u8; 8192];
    // A final newline ends the last line; it does not start another.
    let mut skip_last = true;
    while pos > 0 {
        let n = (pos as usize).min(buf.len());
        pos -= n as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..n])?;
        for i in (0..n).rev() {
            if buf[i] == b'\n' {
                if skip_last && pos + i as u64 == len - 1 {
                    skip_last = false;
                    continue;
                }
                seen += 1;
                if seen == lines {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
    }
    Ok(0)
}

/// The error of a failed read of the task's `name` output.
fn reading(name: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::io(format!("reading the task's {name}"), e)
}

/// Streams a run's output file: from the tail offset to its end, then (with follow) what is
/// appended, reading only new bytes, until the process is gone and the file is drained.
pub(super) fn follow_file(
    path: PathBuf,
    run_file: PathBuf,
    stream: pb::LogStream,
    request: LogRequest,
) -> BoxStream<'static, RuntimeResult<LogChunk>> {
    struct State {
        file: Option<std::fs::File>,
        path: PathBuf,
        run_file: PathBuf,
        done: bool,
    }
    let name = match stream {
        pb::LogStream::Stderr => "stderr",
        _ => "stdout",
    };
    let init = State {
        file: None,
        path,
        run_file,
        done: false,
    };
    futures::stream::unfold(init, move |mut state| async move {
        if state.done {
            return None;
        }
        if state.file.is_none() {
            let mut file = match std::fs::File::open(&state.path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return None;
                }
                Err(e) => {
                    state.done = true;
                    return Some((Err(reading(name, e)), state));
                }
            };
            let start = if request.tail > 0 {
                tail_offset(&mut file, request.tail)
            } else {
                Ok(0)
            };
            if let Err(e) = start.and_then(|s| file.seek(SeekFrom::Start(s))) {
                state.done = true;
                return Some((Err(reading(name, e)), state));
            }
            state.file = Some(file);
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            // Whether the process was running before this read: if it was not, an empty read
            // means the output is complete.
            let was_running = request.follow && alive(&state.run_file);
            let Some(file) = state.file.as_mut() else {
                return None; // opened above
            };
            match file.read(&mut buf) {
                Ok(0) if was_running => tokio::time::sleep(POLL).await,
                Ok(0) => return None,
                Ok(n) => {
                    buf.truncate(n);
                    return Some((Ok((stream, Bytes::from(buf))), state));
                }
                Err(e) => {
                    state.done = true;
                    return Some((Err(reading(name, e)), state));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_offset_finds_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        assert_eq!(tail_offset(&mut file, 1).unwrap(), 8);
        assert_eq!(tail_offset(&mut file, 2).unwrap(), 4);
        assert_eq!(tail_offset(&mut file, 5).unwrap(), 0);
    }
}
