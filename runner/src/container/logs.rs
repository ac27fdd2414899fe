//! A detached container's log: its stdout and stderr as JSON lines, Docker's
//! json-file format (`{"log":"hello\n","stream":"stdout","time":"...Z"}`),
//! written by the monitor ([`LogWriter`], the sandbox's output sink) and
//! read by `runner logs` ([`read`], [`follow`]).
//!
//! The file is `<container>/container.log`; once it would pass `max_size` it
//! becomes `container.log.1` (the older ones shift up, up to `max_files`
//! files in all) and a new one starts, so a chatty service cannot fill the
//! disk. A line longer than 16 KiB is cut into several entries, as Docker does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::state::is_live;
use super::{clock, control, records};
use crate::paths::Root;
use crate::sandbox::{OutputSink, Stream};
use crate::sys::watch::DirWatch;

/// Longest entry: a longer line is cut.
const MAX_ENTRY: usize = 16 * 1024;

/// One entry of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The bytes written (as text), with their newline if they had one.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the monitor read them, RFC 3339 with nanoseconds.
    pub time: String,
}

/// Rotation settings (`--log-opt max-size=10m --log-opt max-file=3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Size at which the file rotates.
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Rotation {
        Rotation {
            max_size: 10 << 20,
            max_files: 3,
        }
    }
}

/// The file names of a log, oldest first: `container.log.{n-1}`, ..., `.1`, `container.log`.
pub fn files(path: &Path, rotation: Rotation) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..rotation.max_files.max(1))
        .rev()
        .map(|i| rotated(path, i))
        .collect();
    v.push(path.to_owned());
    v
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

struct Open {
    file: File,
    size: u64,
    /// Bytes of a line not yet ended, per stream.
    pending: [Vec<u8>; 2],
}

/// Writes a container's output to its log (the monitor's sink).
pub struct LogWriter {
    path: PathBuf,
    rotation: Rotation,
    open: Mutex<Open>,
}

impl LogWriter {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            rotation,
            open: Mutex::new(Open {
                file,
                size,
                pending: [Vec::new(), Vec::new()],
            }),
        })
    }

    fn rotate(&self, open: &mut Open) -> io::Result<()> {
        let keep = self.rotation.max_files.max(1);
        if keep == 1 {
            open.file.set_len(0)?;
        } else {
            for i in (1..keep - 1).rev() {
                let _ = fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
            open.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        open.size = 0;
        Ok(())
    }

    fn entry(&self, open: &mut Open, stream: Stream, bytes: &[u8]) {
        let line = serde_json::to_string(&Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream_name(stream).into(),
            time: clock::rfc3339_ns(clock::now_ns()),
        })
        .expect("entry serializes")
            + "\n";
        if open.size > 0 && open.size + line.len() as u64 > self.rotation.max_size {
            if let Err(e) = self.rotate(open) {
                eprintln!("monitor: rotating {}: {e}", self.path.display());
            }
        }
        // A full disk loses output, never the container.
        if open.file.write_all(line.as_bytes()).is_ok() {
            open.size += line.len() as u64;
        }
    }
}

fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

impl OutputSink for LogWriter {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let i = stream as usize;
        let mut pending = std::mem::take(&mut open.pending[i]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl + 1;
            for chunk in pending[start..end].chunks(MAX_ENTRY) {
                self.entry(&mut open, stream, chunk);
            }
            start = end;
        }
        while pending.len() - start >= MAX_ENTRY {
            self.entry(&mut open, stream, &pending[start..start + MAX_ENTRY]);
            start += MAX_ENTRY;
        }
        pending.drain(..start);
        open.pending[i] = pending;
    }

    fn end(&self, stream: Stream) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let rest = std::mem::take(&mut open.pending[stream as usize]);
        if !rest.is_empty() {
            self.entry(&mut open, stream, &rest);
        }
    }
}

/// What `runner logs` shows.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only the last N entries (`--tail`).
    pub tail: Option<usize>,
    /// Only entries at or after this time, Unix nanoseconds (`--since`).
    pub since: Option<u128>,
    /// Prefix each entry with its time (`-t`).
    pub timestamps: bool,
}

fn parse_line(line: &str) -> Option<(Entry, u128)> {
    let e: Entry = serde_json::from_str(line).ok()?;
    let t = clock::parse_rfc3339(&e.time).unwrap_or(0);
    Some((e, t))
}

/// Writes an entry to stdout or stderr, as the container wrote it.
pub fn print(entry: &Entry, query: &Query) -> io::Result<()> {
    let text = if query.timestamps {
        format!("{} {}", entry.time, entry.log)
    } else {
        entry.log.clone()
    };
    if entry.stream == "stderr" {
        let mut err = io::stderr().lock();
        err.write_all(text.as_bytes())?;
        err.flush()
    } else {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

/// The entries of the log at `path` that `query` selects, oldest first, and
/// how far into the current file they went (where [`follow`] goes on).
pub fn read(path: &Path, rotation: Rotation, query: &Query) -> io::Result<(Vec<Entry>, u64)> {
    let mut entries = Vec::new();
    let mut offset = 0;
    for file in files(path, rotation) {
        let Ok(f) = File::open(&file) else { continue };
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        let mut pos = 0u64;
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            pos += n as u64;
            if let Some((e, t)) = parse_line(&line) {
                if query.since.is_none_or(|s| t >= s) {
                    entries.push(e);
                }
            }
        }
        if file == path {
            offset = pos;
        }
    }
    if let Some(n) = query.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    Ok((entries, offset))
}

/// Prints entries appended to the log of container `id` (at `path`) after
/// `offset`, until the container has ended and the file holds nothing more.
/// A rotation (the file got shorter, or another file took its name) starts
/// over at the new file's beginning. Sleeps between changes: it wakes on a
/// change in the container's directory (the log written or rotated, the
/// record replaced) or the end of its monitor, never on a timer.
pub fn follow(
    root: &Root,
    id: &str,
    path: &Path,
    mut offset: u64,
    query: &Query,
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let running = || records::load(root, id).is_some_and(|s| control::running(&s));
    let watch = DirWatch::new(&root.container(id))?;
    // The monitor's end wakes the wait even if it could not record it (killed).
    let owner = records::load(root, id)
        .filter(is_live)
        .and_then(|s| crate::sys::proc::pidfd_open(s.owner_pid).ok());
    let mut file = File::open(path)?;
    let mut inode = file.metadata()?.ino();
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        let alive = running();
        loop {
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            offset += n as u64;
            if let Some((e, _)) = parse_line(&line) {
                print(&e, query)?;
            }
            line.clear();
        }
        let replaced = fs::metadata(path).is_ok_and(|m| m.ino() != inode || m.len() < offset);
        if replaced {
            let f = File::open(path)?;
            inode = f.metadata()?.ino();
            reader = BufReader::new(f);
            offset = 0;
            line.clear();
            continue;
        }
        if !alive {
            return Ok(());
        }
        watch.wait(owner.as_ref(), None)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_entries_and_the_log_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rotation = Rotation {
            max_size: 400,
            max_files: 2,
        };
        let w = LogWriter::open(&path, rotation).unwrap();
        w.write(Stream::Stdout, b"one\ntw");
        w.write(Stream::Stderr, b"err\n");
        w.write(Stream::Stdout, b"o\n");
        w.end(Stream::Stdout);
        let (entries, _) = read(&path, rotation, &Query::default()).unwrap();
        let logs: Vec<&str> = entries.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, ["one\n", "err\n", "two\n"]);
        assert_eq!(entries[1].stream, "stderr");
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        assert!(rotated(&path, 1).exists());
        assert!(fs::metadata(&path).unwrap().len() <= 400);
        let tail = Query {
            tail: Some(2),
            ..Query::default()
        };
        let (entries, _) = read(&path, rotation, &tail).unwrap();
        let logs: Vec<&str> = entries.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(logs, ["line 18\n", "line 19\n"]);
    }
}
