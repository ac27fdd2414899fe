//! The container's standard streams and session.
//!
//! With `-t`: a pseudo-terminal. Its slave becomes the container's fds 0-2
//! and the controlling terminal of the container's own session; the runner
//! puts its own terminal, if it has one, in raw mode, copies the master to
//! its stdout and, with `-i`, its stdin to the master.
//!
//! Without `-t` the container never gets the runner's own descriptors, which
//! may be the caller's terminal: stdout and stderr are pipes the runner
//! copies to its own; stdin is `/dev/null`, or with `-i` a pipe the runner
//! copies its stdin into (Docker's behaviour). The container still runs in
//! a session of its own, without a controlling terminal: `/dev/tty` fails
//! with ENXIO, and TIOCSTI cannot type into anybody's terminal.
//!
//! [`Streams`] is opened in the runner before `clone`; the child installs its
//! ends ([`ChildStreams::install`]) and the runner copies through the others
//! ([`Streams::relay`]) once the container runs.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::fcntl::OFlag;
use nix::pty::OpenptyResult;

use super::child::{ChildError, Context};
use crate::sys;

/// Which of the container's output streams bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1 (and everything, with a terminal).
    Stdout,
    /// fd 2.
    Stderr,
}

/// Takes a container's output instead of the runner's stdout and stderr
/// (a detached container's log). Called from the copying threads.
pub trait OutputSink: Send + Sync {
    /// Bytes the container wrote on `stream`.
    fn write(&self, stream: Stream, bytes: &[u8]);
    /// `stream` reached its end (the container is gone).
    fn end(&self, stream: Stream);
}

/// The runner's side of the container's streams, before and while it runs.
pub struct Streams {
    kind: Kind,
}

enum Kind {
    Pty {
        pty: OpenptyResult,
        console: PathBuf,
    },
    Pipes {
        /// Read end for the container, write end for the runner (`-i`).
        stdin: Option<(OwnedFd, OwnedFd)>,
        /// Read end for the runner, write end for the container.
        stdout: (OwnedFd, OwnedFd),
        /// Read end for the runner, write end for the container.
        stderr: (OwnedFd, OwnedFd),
    },
}

/// The container's ends, as the child sees them (plain numbers: the child
/// shares the runner's descriptor table as it was at `clone`).
#[derive(Clone, Copy)]
pub enum ChildStreams {
    /// A pseudo-terminal: the slave for fds 0-2, the master to close.
    Pty {
        /// The slave.
        slave: RawFd,
        /// The master (the runner's).
        master: RawFd,
    },
    /// Pipes; stdin is `/dev/null` when there is none.
    Pipes {
        /// Read end of the stdin pipe (`-i`).
        stdin: Option<RawFd>,
        /// Write end of the stdout pipe.
        stdout: RawFd,
        /// Write end of the stderr pipe.
        stderr: RawFd,
    },
}

fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
}

impl Streams {
    /// A pseudo-terminal for `-t`, pipes otherwise (a stdin pipe with `-i`).
    pub fn open(tty: bool, stdin: bool) -> nix::Result<Streams> {
        let kind = if tty {
            let pty = nix::pty::openpty(None, None)?;
            let console = nix::unistd::ttyname(&pty.slave)?;
            Kind::Pty { pty, console }
        } else {
            Kind::Pipes {
                stdin: stdin.then(pipe).transpose()?,
                stdout: pipe()?,
                stderr: pipe()?,
            }
        };
        Ok(Streams { kind })
    }

    /// The pty slave's path, bound over the container's `/dev/console`.
    pub fn console(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Pty { console, .. } => Some(console),
            Kind::Pipes { .. } => None,
        }
    }

    /// The ends the child installs.
    pub fn child(&self) -> ChildStreams {
        match &self.kind {
            Kind::Pty { pty, .. } => ChildStreams::Pty {
                slave: pty.slave.as_raw_fd(),
                master: pty.master.as_raw_fd(),
            },
            Kind::Pipes {
                stdin,
                stdout,
                stderr,
            } => ChildStreams::Pipes {
                stdin: stdin.as_ref().map(|(r, _)| r.as_raw_fd()),
                stdout: stdout.1.as_raw_fd(),
                stderr: stderr.1.as_raw_fd(),
            },
        }
    }

    /// Once the container runs: closes the container's ends here (so that
    /// the copies see EOF when the container is gone) and starts copying
    /// between the runner's stdio and the container's, or into `sink`.
    pub fn relay(self, stdin: bool, sink: Option<Arc<dyn OutputSink>>) -> Relay {
        match self.kind {
            Kind::Pty { pty, .. } => {
                drop(pty.slave);
                let stdin_is_tty = nix::unistd::isatty(0).unwrap_or(false);
                if stdin_is_tty {
                    sys::term::copy_winsize(0, pty.master.as_raw_fd());
                }
                let mut output = Vec::new();
                if let Ok(out) = pty.master.try_clone() {
                    output.push(match &sink {
                        Some(sink) => sink_thread(out, sink.clone(), Stream::Stdout),
                        None => copy_thread(out, io::stdout().as_fd()),
                    });
                }
                if stdin {
                    if let Ok(input) = pty.master.try_clone() {
                        copy_stdin_thread(input);
                    }
                }
                Relay {
                    output,
                    master: Some(pty.master),
                    _raw: stdin_is_tty.then(RawTerminal::enter),
                }
            }
            Kind::Pipes {
                stdin: stdin_pipe,
                stdout,
                stderr,
            } => {
                let output = match &sink {
                    Some(sink) => vec![
                        sink_thread(stdout.0, sink.clone(), Stream::Stdout),
                        sink_thread(stderr.0, sink.clone(), Stream::Stderr),
                    ],
                    None => vec![
                        copy_thread(stdout.0, io::stdout().as_fd()),
                        copy_thread(stderr.0, io::stderr().as_fd()),
                    ],
                };
                if let Some((_, input)) = stdin_pipe {
                    copy_stdin_thread(input);
                }
                Relay {
                    output,
                    master: None,
                    _raw: None,
                }
            }
        }
    }
}

/// Copies `from` to a duplicate of `to` (unbuffered) until EOF or an error.
fn copy_thread(from: OwnedFd, to: std::os::fd::BorrowedFd<'_>) -> JoinHandle<()> {
    let to = to.try_clone_to_owned().map(fs::File::from);
    std::thread::spawn(move || {
        let Ok(mut to) = to else { return };
        let mut from = fs::File::from(from);
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Hands what `from` yields to `sink` until EOF or an error (EIO from a pty
/// master whose slave closed).
fn sink_thread(from: OwnedFd, sink: Arc<dyn OutputSink>, stream: Stream) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = fs::File::from(from);
        let mut buf = [0u8; 16384];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.write(stream, &buf[..n]);
        }
        sink.end(stream);
    })
}

/// Copies the runner's stdin into the container until either side ends. Not
/// joined: a read of the runner's stdin may block past the container's end.
fn copy_stdin_thread(to: OwnedFd) {
    std::thread::spawn(move || {
        let mut to = fs::File::from(to);
        let _ = io::copy(&mut io::stdin(), &mut to);
    });
}

/// The runner's copies of the container's output, running.
pub struct Relay {
    output: Vec<JoinHandle<()>>,
    master: Option<OwnedFd>,
    _raw: Option<RawTerminal>,
}

impl Relay {
    /// The pty master, for window size changes.
    pub fn master(&self) -> Option<RawFd> {
        self.master.as_ref().map(|m| m.as_raw_fd())
    }

    /// After the container ended: waits for its output to be copied, then
    /// restores the runner's terminal.
    pub fn finish(self) {
        for t in self.output {
            let _ = t.join();
        }
    }
}

impl ChildStreams {
    /// In the child, after `pivot_root`: a new session (with the pty as its
    /// controlling terminal), and the container's ends as fds 0, 1 and 2.
    pub fn install(&self) -> Result<(), ChildError> {
        nix::unistd::setsid().ctx(|| "setsid".into())?;
        match *self {
            ChildStreams::Pty { slave, master } => {
                let _ = nix::unistd::close(master);
                sys::term::set_controlling_terminal(slave)
                    .ctx(|| "set controlling terminal".into())?;
                for fd in 0..3 {
                    nix::unistd::dup2(slave, fd).ctx(|| "dup2 pty".into())?;
                }
            }
            ChildStreams::Pipes {
                stdin,
                stdout,
                stderr,
            } => {
                let null;
                let stdin = match stdin {
                    Some(fd) => fd,
                    None => {
                        null = fs::File::open("/dev/null").ctx(|| "open /dev/null".into())?;
                        null.as_raw_fd()
                    }
                };
                nix::unistd::dup2(stdin, 0).ctx(|| "dup2 stdin".into())?;
                nix::unistd::dup2(stdout, 1).ctx(|| "dup2 stdout".into())?;
                nix::unistd::dup2(stderr, 2).ctx(|| "dup2 stderr".into())?;
            }
        }
        Ok(())
    }
}

/// Restores the terminal mode on drop.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        let stdin = io::stdin();
        match nix::sys::termios::tcgetattr(&stdin) {
            Ok(saved) => {
                let mut raw = saved.clone();
                nix::sys::termios::cfmakeraw(&mut raw);
                let _ =
                    nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
                RawTerminal(Some(saved))
            }
            Err(_) => RawTerminal(None),
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
    }
}
