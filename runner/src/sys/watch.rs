//! Waiting without polling: for a change in a directory (inotify: a file
//! in it written, created, renamed into it or removed; the directory itself
//! removed), for another descriptor to become readable (a pidfd: its
//! process ended), or for a timeout, whichever comes first. Built on nix's
//! safe `inotify` and `poll`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// A watch on one directory.
pub(crate) struct DirWatch {
    inotify: Inotify,
}

impl DirWatch {
    /// Watches `dir` (which must exist).
    pub(crate) fn new(dir: &Path) -> io::Result<DirWatch> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(
            dir,
            AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_DELETE_SELF,
        )?;
        Ok(DirWatch { inotify })
    }

    /// Waits until something changed in the directory since the last wait,
    /// `also` is readable, or `timeout` passes (`None`: no limit). True
    /// unless the timeout passed first.
    pub(crate) fn wait(
        &self,
        also: Option<&OwnedFd>,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        let mut fds = vec![PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = also {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        let ready = loop {
            match poll(&mut fds, timeout) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other?,
            }
        };
        // Drain what is queued: the next wait sleeps until a new change.
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
        }
        Ok(ready > 0)
    }
}
