//! `.dockerignore`: which context paths a build never sees.
//!
//! One pattern a line; `#` starts a comment line; a leading `!` re-includes;
//! patterns are cleaned paths relative to the context (a leading `/` means
//! the same); `*`, `?` and `[...]` match within one path element and `**`
//! any number of elements. A pattern matching a directory excludes all
//! below it. The last pattern that matches a path (or one of its parent
//! directories) decides.

/// One pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    parts: Vec<String>,
    negate: bool,
}

/// The patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Parses a `.dockerignore` file's text.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let parts: Vec<String> = pat
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .map(str::to_owned)
                .collect();
            if parts.is_empty() {
                continue;
            }
            patterns.push(Pattern { parts, negate });
        }
        Ignore { patterns }
    }

    /// Whether there are any patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the context path `rel` (`a/b/c`, no leading `/`) is excluded.
    pub fn excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // The path itself or one of its parents.
            let hit = (1..=parts.len()).any(|n| match_parts(&p.parts, &parts[..n]));
            if hit {
                excluded = !p.negate;
            }
        }
        excluded
    }

    /// Whether a later `!` pattern could re-include something under the
    /// excluded directory `rel` (then its contents must still be walked).
    pub fn may_reinclude_under(&self, rel: &str) -> bool {
        let depth = rel.split('/').filter(|p| !p.is_empty()).count();
        self.patterns
            .iter()
            .any(|p| p.negate && (p.parts.len() > depth || p.parts.iter().any(|s| s == "**")))
    }
}

fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_parts(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => glob(first.as_bytes(), p.as_bytes()) && match_parts(rest, prest),
            None => false,
        },
    }
}

/// fnmatch of one path element: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`/`[!a]`, `\c`.
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(&c) = s.first() else { return false };
            let (negate, body) = match rest.first() {
                Some(b'^' | b'!') => (true, &rest[1..]),
                _ => (false, rest),
            };
            let Some(end) = body.iter().skip(1).position(|&b| b == b']').map(|p| p + 1) else {
                return c == b'[' && glob(rest, &s[1..]);
            };
            let class = &body[..end];
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob(&body[end + 1..], &s[1..])
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            s.first() == Some(&rest[0]) && glob(&rest[1..], &s[1..])
        }
        Some((&p, rest)) => s.first() == Some(&p) && glob(rest, &s[1..]),
    }
}

/// Whether `s` has glob characters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_last_match_wins() {
        let i = Ignore::parse("# c\n*.log\n!keep.log\n/build\n**/tmp\ndocs/*.md\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("sub/a.log"), "* stays in one element");
        assert!(i.excluded("build/x/y"));
        assert!(i.excluded("tmp"));
        assert!(i.excluded("a/b/tmp/c"));
        assert!(i.excluded("docs/x.md"));
        assert!(!i.excluded("docs/sub/x.md"));
        assert!(!i.excluded("src/main.rs"));
    }

    #[test]
    fn reinclusion_under_an_excluded_dir() {
        let i = Ignore::parse("vendor\n!vendor/keep\n");
        assert!(i.excluded("vendor/a"));
        assert!(!i.excluded("vendor/keep"));
        assert!(i.may_reinclude_under("vendor"));
    }

    #[test]
    fn globs() {
        assert!(glob(b"a[0-9]?", b"a1x"));
        assert!(!glob(b"a[!0-9]", b"a1"));
        assert!(glob(b"*.tar.*", b"x.tar.gz"));
        assert!(glob(b"\\*", b"*"));
    }
}
