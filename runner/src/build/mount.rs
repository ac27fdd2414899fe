//! `RUN --mount=...`: BuildKit's mounts for one RUN step, parsed.
//!
//! - `type=bind` (the default): `source` (default the root) of the build
//!   context, or of `from=` a stage or an image, at `target`; read-only
//!   unless `rw`, and then what the step writes there is thrown away.
//! - `type=cache`: a directory kept between builds under the state root,
//!   found by `id` (default the target), created with `mode` (0755), `uid`
//!   and `gid` (0); `sharing=shared` (the default: steps use it at once),
//!   `locked` (one step at a time) or `private` (a busy cache gives the
//!   step an empty directory of its own).
//! - `type=tmpfs`: an empty tmpfs, `size` bytes at most.
//! - `type=secret`: the secret `id` given to `runner build --secret`, as a
//!   read-only file at `target` (default `/run/secrets/<id>`; `mode` 0400),
//!   or with `env=NAME` in that variable. A missing secret is an error only
//!   with `required`.
//!
//! A relative target joins the WORKDIR. Nothing a mount shows is in the
//! step's layer, and the mount points the step created are removed before
//! the snapshot (BuildKit's "mount stubs"). The key words are
//! BuildKit's, with its aliases (`src`, `dst`, `destination`, `ro`,
//! `readonly`, `readwrite`).

/// The kind of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// From the context, a stage or an image.
    Bind,
    /// A directory kept between builds.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret given to the build.
    Secret,
}

/// How steps share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Several steps at once.
    Shared,
    /// One step at a time; the others wait.
    Locked,
    /// One step at a time; the others get an empty directory.
    Private,
}

/// One `--mount`, as written (after variables are expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The kind.
    pub kind: Type,
    /// Absolute path in the container.
    pub target: String,
    /// Bind: the path in the source (context-relative or in `from`).
    pub source: String,
    /// Bind: a stage or an image instead of the context.
    pub from: Option<String>,
    /// Mounted read-only.
    pub read_only: bool,
    /// Cache and secret: the id.
    pub id: String,
    /// Cache: sharing mode.
    pub sharing: Sharing,
    /// Cache and secret: the mode of the directory or file.
    pub mode: u32,
    /// Cache and secret: the owner.
    pub uid: u32,
    /// Cache and secret: the group.
    pub gid: u32,
    /// Tmpfs: its size limit in bytes.
    pub size: Option<u64>,
    /// Secret: a missing secret fails the step.
    pub required: bool,
    /// Secret: the environment variable that gets it (instead of a file).
    pub env: Option<String>,
}

/// Parses one `--mount` value; relative targets join `workdir`.
pub fn parse(value: &str, workdir: &str) -> Result<Mount, String> {
    let mut fields = Vec::new();
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
            None => (field.to_ascii_lowercase(), None),
        };
        fields.push((k, v));
    }
    let kind = match fields.iter().find(|(k, _)| k == "type") {
        None => Type::Bind,
        Some((_, v)) => match v.as_deref() {
            Some("bind") => Type::Bind,
            Some("cache") => Type::Cache,
            Some("tmpfs") => Type::Tmpfs,
            Some("secret") => Type::Secret,
            Some("ssh") => {
                return Err(
                    "--mount=type=ssh is not supported yet (no SSH agent forwarding)".into(),
                )
            }
            other => {
                return Err(format!(
                    "--mount: unknown type {:?}: use bind, cache, tmpfs or secret",
                    other.unwrap_or("")
                ))
            }
        },
    };
    let mut m = Mount {
        kind,
        target: String::new(),
        source: String::new(),
        from: None,
        read_only: kind == Type::Bind || kind == Type::Secret,
        id: String::new(),
        sharing: Sharing::Shared,
        mode: if kind == Type::Secret { 0o400 } else { 0o755 },
        uid: 0,
        gid: 0,
        size: None,
        required: false,
        env: None,
    };
    for (k, v) in fields {
        let need = || {
            v.clone()
                .ok_or_else(|| format!("--mount: {k} needs a value ({k}=...)"))
        };
        match k.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = need()?,
            "source" | "src" => m.source = need()?,
            "from" => m.from = Some(need()?),
            "id" => m.id = need()?,
            "env" => m.env = Some(need()?),
            "ro" | "readonly" => m.read_only = flag(&k, v.as_deref())?,
            "rw" | "readwrite" => m.read_only = !flag(&k, v.as_deref())?,
            "required" => m.required = flag(&k, v.as_deref())?,
            "sharing" => {
                m.sharing = match need()?.as_str() {
                    "shared" => Sharing::Shared,
                    "locked" => Sharing::Locked,
                    "private" => Sharing::Private,
                    s => {
                        return Err(format!(
                            "--mount: sharing={s}: use shared, locked or private"
                        ))
                    }
                }
            }
            "mode" => {
                let s = need()?;
                m.mode = u32::from_str_radix(&s, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| format!("--mount: mode={s} is not an octal mode"))?;
            }
            "uid" | "gid" => {
                let s = need()?;
                let n = s
                    .parse()
                    .map_err(|_| format!("--mount: {k}={s} is not a number"))?;
                if k == "uid" {
                    m.uid = n;
                } else {
                    m.gid = n;
                }
            }
            "size" => m.size = Some(size(&need()?)?),
            other => return Err(format!("--mount: unknown option {other:?}")),
        }
    }
    if m.kind == Type::Secret {
        if m.id.is_empty() {
            m.id = m.target.rsplit('/').next().unwrap_or_default().to_owned();
        }
        if m.id.is_empty() {
            return Err("--mount=type=secret needs an id (id=NAME)".into());
        }
        if m.target.is_empty() && m.env.is_none() {
            m.target = format!("/run/secrets/{}", m.id);
        }
    } else if m.target.is_empty() {
        return Err("--mount needs a target (target=/path)".into());
    }
    if !m.target.is_empty() {
        m.target = join(workdir, &m.target);
    }
    if m.kind == Type::Cache && m.id.is_empty() {
        m.id = m.target.clone();
    }
    if m.kind != Type::Bind && m.kind != Type::Cache && !m.source.is_empty() {
        return Err(format!(
            "--mount: source is for bind and cache mounts, not {:?}",
            m.kind
        )
        .to_lowercase());
    }
    Ok(m)
}

/// A boolean option: bare, or `=true`/`=false`.
fn flag(k: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("--mount: {k}={other}: use true or false")),
    }
}

/// `64m`, `1g`, `512k` or bytes.
fn size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("--mount: size={s} is not a size (bytes, or with k, m or g)"))
}

/// `target` made absolute against `workdir`, `.` and `..` resolved.
fn join(workdir: &str, target: &str) -> String {
    let full = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{workdir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in full.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The `from=` of a `--mount` value, if it has one (for the stage order).
pub fn from_of(value: &str) -> Option<String> {
    parse(value, "/").ok().and_then(|m| m.from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_buildkit() {
        let m = parse("target=/src", "/").unwrap();
        assert_eq!(
            (m.kind, m.read_only, m.source.as_str()),
            (Type::Bind, true, "")
        );
        let m = parse("type=cache,target=go/pkg", "/work").unwrap();
        assert_eq!(m.target, "/work/go/pkg");
        assert_eq!(
            (m.id.as_str(), m.sharing, m.mode),
            ("/work/go/pkg", Sharing::Shared, 0o755)
        );
        assert!(!m.read_only);
        let m = parse("type=secret,id=tok", "/").unwrap();
        assert_eq!(
            (m.target.as_str(), m.mode, m.required),
            ("/run/secrets/tok", 0o400, false)
        );
        let m = parse("type=secret,id=tok,env=TOKEN,required", "/").unwrap();
        assert_eq!(
            (m.target.as_str(), m.env.as_deref(), m.required),
            ("", Some("TOKEN"), true)
        );
        let m = parse("type=secret,dst=/etc/key", "/").unwrap();
        assert_eq!(m.id, "key");
        let m = parse("type=tmpfs,target=/t,size=64m", "/").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = parse("type=bind,from=build,src=/out,dst=/in,rw", "/").unwrap();
        assert_eq!(
            (m.from.as_deref(), m.source.as_str(), m.read_only),
            (Some("build"), "/out", false)
        );
        assert_eq!(from_of("from=base,target=/b").as_deref(), Some("base"));
    }

    #[test]
    fn bad_values_are_named() {
        for (v, want) in [
            ("type=cache", "needs a target"),
            ("type=ssh", "type=ssh is not supported"),
            ("type=nfs,target=/x", "unknown type"),
            ("target=/x,colour=red", "unknown option"),
            ("type=cache,target=/x,sharing=all", "sharing=all"),
            ("type=cache,target=/x,mode=999", "not an octal mode"),
            ("type=cache,target=/x,uid=root", "uid=root"),
            ("type=tmpfs,target=/x,size=lots", "size=lots"),
            ("target=/x,ro=maybe", "ro=maybe"),
            ("type=tmpfs,target=/x,source=/y", "source is for bind"),
        ] {
            let e = parse(v, "/").unwrap_err();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
