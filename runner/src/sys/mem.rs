//! Giving back memory a long-lived process touched once: the clean,
//! file-backed pages of its mappings (`madvise(MADV_DONTNEED)`), and the
//! free heap (`malloc_trim`).

use std::io;

/// One mapping of `/proc/self/smaps` that may be dropped: start, length.
struct Clean {
    start: usize,
    len: usize,
}

/// Parses `/proc/self/smaps`: the mappings backed by a file, not writable,
/// with resident pages and none of them anonymous (no copy-on-write page,
/// e.g. not a RELRO segment whose relocations were written before it was
/// made read-only).
fn clean_file_mappings(smaps: &str) -> Vec<Clean> {
    let mut out = Vec::new();
    let mut current: Option<(Clean, bool)> = None; // (range, candidate)
    let mut rss = 0u64;
    let mut anon = 0u64;
    let mut flush = |current: &mut Option<(Clean, bool)>, rss: u64, anon: u64| {
        if let Some((range, true)) = current.take() {
            if rss > 0 && anon == 0 {
                out.push(range);
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            else {
                continue;
            };
            flush(&mut current, rss, anon);
            rss = 0;
            anon = u64::MAX; // until its line is read
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let candidate = path.starts_with('/')
                && perms.starts_with('r')
                && perms.as_bytes().get(1) == Some(&b'-')
                && perms.as_bytes().get(3) == Some(&b'p');
            current = Some((
                Clean {
                    start: lo,
                    len: hi - lo,
                },
                candidate,
            ));
            continue;
        }
        let value = fields.next().and_then(|v| v.parse::<u64>().ok());
        match (first, value) {
            ("Rss:", Some(v)) => rss = v,
            ("Anonymous:", Some(v)) => anon = v,
            _ => {}
        }
    }
    flush(&mut current, rss, anon);
    out
}

/// Drops from this process's page tables the resident pages of its clean,
/// read-only, private file mappings (its code and constants, those of the
/// shared libraries), and returns the heap's free memory to the kernel.
/// A page touched again is faulted back in from the page cache, so only the
/// pages still in use count in the RSS afterwards. Returns the bytes of the
/// mappings dropped.
pub(crate) fn drop_clean_file_pages() -> io::Result<usize> {
    trim_heap();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut dropped = 0;
    for range in clean_file_mappings(&smaps) {
        // SAFETY: the range is one whole mapping of this process, private,
        // not writable, backed by a file, without one anonymous
        // (copy-on-write) page: every resident page equals the file's
        // content, so dropping it loses nothing (the next access reads it
        // back). Not being writable, no thread can dirty it meanwhile.
        let rc = unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.len,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            dropped += range.len;
        }
    }
    Ok(dropped)
}

/// Returns the free memory at the top and in the middle of glibc's heap.
#[cfg(target_env = "gnu")]
fn trim_heap() {
    // SAFETY: malloc_trim only releases free heap memory; no pointer given.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(target_env = "gnu"))]
fn trim_heap() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings() {
        let smaps = "\
5555000-5556000 r--p 00000000 08:01 42 /usr/bin/runner
Rss:                   4 kB
Anonymous:             0 kB
5556000-5558000 r-xp 00001000 08:01 42 /usr/bin/runner
Rss:                   8 kB
Anonymous:             0 kB
5558000-5559000 r--p 00003000 08:01 42 /usr/bin/runner
Rss:                   4 kB
Anonymous:             4 kB
5559000-555a000 rw-p 00004000 08:01 42 /usr/bin/runner
Rss:                   4 kB
Anonymous:             0 kB
555a000-555b000 r--p 00000000 00:00 0 [vvar]
Rss:                   4 kB
Anonymous:             0 kB
555b000-555c000 r-xp 00000000 08:01 43 /usr/lib/libc.so.6
Rss:                   0 kB
Anonymous:             0 kB
555c000-555d000 r-xp 00000000 08:01 43 /usr/lib/libc.so.6
Rss:                   4 kB
Anonymous:             0 kB
";
        let got: Vec<(usize, usize)> = clean_file_mappings(smaps)
            .iter()
            .map(|c| (c.start, c.len))
            .collect();
        assert_eq!(
            got,
            vec![
                (0x5555000, 0x1000),
                (0x5556000, 0x2000),
                (0x555c000, 0x1000)
            ]
        );
    }
}
