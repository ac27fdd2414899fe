//! Logging that never blocks serving: each formatted line goes into a
//! bounded queue that one thread writes to stderr. A full queue (a log
//! reader that stopped reading) or a failed write (a reader that went away:
//! `EPIPE`, a closed descriptor) drops the line and counts it in
//! [`crate::metrics::LOG_LINES_DROPPED`]; no request ever waits on the log.
//!
//! Colours only when stderr is a terminal; `text` or `json` per
//! [`LogFormat`]. Uses `config` (the format) and `metrics` (the counter).

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;
use crate::metrics::LOG_LINES_DROPPED;

/// Lines waiting for the writer thread at most.
const QUEUE: usize = 1024;

/// A line longer than this (a request path near hyper's head limit) is cut,
/// so the queue holds at most `QUEUE * MAX_LINE` bytes (8 MiB).
const MAX_LINE: usize = 8 * 1024;

/// How long [`Flush`] waits for the queued lines to be written at exit.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

enum Msg {
    Line(Vec<u8>),
    Flush(Sender<()>),
}

/// The `MakeWriter` of the subscriber: hands each line to the queue.
struct Lossy(SyncSender<Msg>);

/// One event's writer: the formatter writes the whole line in one call.
struct Line<'a>(&'a SyncSender<Msg>);

impl<'a> MakeWriter<'a> for Lossy {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.0)
    }
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = if buf.len() > MAX_LINE {
            [&buf[..MAX_LINE], b"...\n"].concat()
        } else {
            buf.to_vec()
        };
        if self.0.try_send(Msg::Line(line)).is_err() {
            LOG_LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The writer thread: write each line, count the ones that fail.
fn drain(rx: Receiver<Msg>, mut out: impl Write) {
    for msg in rx {
        match msg {
            Msg::Line(line) => {
                if out.write_all(&line).is_err() {
                    LOG_LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Msg::Flush(done) => {
                let _ = out.flush();
                let _ = done.send(());
            }
        }
    }
}

/// Returned by [`init`]: dropping it waits (up to two seconds) for the
/// queued lines to be written, so a command's last lines are not lost.
pub struct Flush(SyncSender<Msg>);

impl Drop for Flush {
    fn drop(&mut self) {
        let deadline = Instant::now() + FLUSH_WAIT;
        let (done, written) = channel();
        let mut msg = Msg::Flush(done);
        loop {
            match self.0.try_send(msg) {
                Ok(()) => {
                    let _ =
                        written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                    return;
                }
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return,
            }
        }
    }
}

/// Install the global subscriber: `STRATA_LOG` filters (default `info`),
/// lines go to stderr through the lossy queue.
pub fn init(format: LogFormat) -> Flush {
    let (tx, rx) = sync_channel(QUEUE);
    // Without the thread (spawning failed) the queue fills and every line
    // is dropped and counted: still never blocking.
    let _ = std::thread::Builder::new()
        .name("log".into())
        .spawn(move || drain(rx, std::io::stderr()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(Lossy(tx.clone()));
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    Flush(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader is gone.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_huge_line_is_cut_so_the_queue_stays_bounded() {
        let (tx, rx) = sync_channel(1);
        let mut line = Line(&tx);
        assert_eq!(line.write(&vec![b'a'; 400_000]).unwrap(), 400_000);
        let Ok(Msg::Line(queued)) = rx.try_recv() else {
            panic!("nothing queued")
        };
        assert_eq!(queued.len(), MAX_LINE + 4);
        assert!(queued.ends_with(b"...\n"));
    }

    #[test]
    fn failed_writes_and_a_full_queue_drop_lines_without_blocking() {
        let before = LOG_LINES_DROPPED.load(Ordering::Relaxed);
        let (tx, rx) = sync_channel(2);
        let lossy = Lossy(tx.clone());
        // No writer thread yet: the third line finds the queue full.
        for _ in 0..3 {
            assert_eq!(lossy.make_writer().write(b"line\n").unwrap(), 5);
        }
        assert!(LOG_LINES_DROPPED.load(Ordering::Relaxed) > before);
        let thread = std::thread::spawn(move || drain(rx, Broken));
        drop(Flush(tx));
        drop(lossy);
        thread.join().unwrap();
        // The two queued lines failed to write: dropped too.
        assert!(LOG_LINES_DROPPED.load(Ordering::Relaxed) >= before + 3);
    }
}
