//! What `ps` and `inspect` show of containers, in Docker's words: `ps`'s
//! columns and status strings (`Up 3 seconds (healthy)`, `Exited (137) 2
//! minutes ago`), its filters and JSON lines; `inspect`'s JSON with Docker's
//! field names, so scripts written for `docker inspect` keep working.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::clock;
use super::control::running;
use super::detached::{self, Config};
use super::state::{now_ms, State, Status};
use crate::paths::Root;

/// `ps --filter` terms: the same key twice means either, different keys both.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    terms: BTreeMap<String, Vec<String>>,
}

/// A malformed `--filter`.
#[derive(Debug, thiserror::Error)]
#[error("invalid filter {0:?}: use status=, name=, label=KEY[=VALUE] or id=")]
pub struct BadFilter(String);

impl Filters {
    /// Parses `KEY=VALUE` terms.
    pub fn parse(terms: &[String]) -> Result<Filters, BadFilter> {
        let mut f = Filters::default();
        for t in terms {
            let (k, v) = t.split_once('=').ok_or_else(|| BadFilter(t.clone()))?;
            if !matches!(k, "status" | "name" | "label" | "id") {
                return Err(BadFilter(t.clone()));
            }
            f.terms.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(f)
    }

    /// Whether any filter is given on `status` (then `-a` is implied).
    pub fn on_status(&self) -> bool {
        self.terms.contains_key("status")
    }

    fn matches(&self, row: &Row) -> bool {
        self.terms.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "status" => row.state == *v,
                "name" => row.name.contains(v.as_str()),
                "id" => row.id.starts_with(v.as_str()),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => row.labels.get(lk).is_some_and(|x| x == lv),
                    None => row.labels.contains_key(v.as_str()),
                },
                _ => false,
            })
        })
    }
}

/// One container as `ps` sees it.
pub struct Row {
    id: String,
    image: String,
    command: String,
    created: u64,
    status: String,
    state: String,
    name: String,
    ports: String,
    labels: BTreeMap<String, String>,
}

/// Docker's status words for a health state.
fn health_suffix(s: &State) -> String {
    match s.life.health.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".into(),
        Some(status) => format!(" ({status})"),
        None => String::new(),
    }
}

/// The STATUS column.
pub fn status_text(s: &State, now: u64) -> String {
    let ago = |t: u64| clock::human(now.saturating_sub(t));
    match effective_status(s) {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}{}", ago(s.life.started_at), health_suffix(s)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.life.exit_code,
            ago(s.life.finished_at)
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.life.exit_code,
            ago(s.life.finished_at)
        ),
        Status::Dead => "Dead".into(),
    }
}

/// The status, never `running` when the owner is gone (a record the next
/// command has not yet marked).
pub fn effective_status(s: &State) -> Status {
    match s.life.status {
        Status::Running | Status::Restarting if !running(s) => Status::Exited,
        other => other,
    }
}

fn quoted_command(args: &[String]) -> String {
    let full = args.join(" ");
    let short: String = if full.chars().count() > 20 {
        full.chars().take(19).chain(['…']).collect()
    } else {
        full
    };
    format!("\"{short}\"")
}

fn row(root: &Root, s: &State, now: u64) -> Row {
    let labels = detached::load_config(root, &s.id)
        .map(|c| c.labels)
        .unwrap_or_default();
    Row {
        id: s.id.clone(),
        image: s.image.clone(),
        command: quoted_command(&s.life.command),
        created: s.life.created,
        status: status_text(s, now),
        state: effective_status(s).as_str().to_owned(),
        name: s.name.clone().unwrap_or_default(),
        ports: ports_text(root, &s.id),
        labels,
    }
}

/// The PORTS column, as Docker writes it: `0.0.0.0:8080->80/tcp, ...`
/// (empty unless the container runs with published ports).
fn ports_text(root: &Root, id: &str) -> String {
    crate::network::view::ports(root, id)
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip_text(),
                p.host_port,
                p.container_port,
                p.proto.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows `ps` lists: running ones, or all with `all`; filtered.
pub fn rows(root: &Root, states: &[State], all: bool, filters: &Filters) -> Vec<Row> {
    let now = now_ms();
    states
        .iter()
        .filter(|s| all || filters.on_status() || running(s))
        .map(|s| row(root, s, now))
        .filter(|r| filters.matches(r))
        .collect()
}

/// `ps` as a table, columns padded like Docker's.
pub fn table(rows: &[Row]) -> String {
    let now = now_ms();
    let mut lines: Vec<[String; 7]> = vec![[
        "CONTAINER ID".into(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for r in rows {
        lines.push([
            r.id[..12.min(r.id.len())].to_owned(),
            r.image.clone(),
            r.command.clone(),
            format!("{} ago", clock::human(now.saturating_sub(r.created))),
            r.status.clone(),
            r.ports.clone(),
            r.name.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, c) in l.iter().enumerate() {
            line.push_str(c);
            if i < 6 {
                let pad = widths[i] - c.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `ps -q`: full ids would be `--no-trunc`; Docker prints 12 digits.
pub fn quiet(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| format!("{}\n", &r.id[..12.min(r.id.len())]))
        .collect()
}

/// `ps --format json`: one object per line, Docker's keys.
pub fn json_lines(rows: &[Row]) -> String {
    let now = now_ms();
    rows.iter()
        .map(|r| {
            let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            json!({
                "ID": &r.id[..12.min(r.id.len())],
                "Image": r.image,
                "Command": r.command,
                "CreatedAt": clock::rfc3339_ms(r.created),
                "RunningFor": format!("{} ago", clock::human(now.saturating_sub(r.created))),
                "Status": r.status,
                "State": r.state,
                "Names": r.name,
                "Labels": labels.join(","),
                "Ports": r.ports,
                "Networks": "",
            })
            .to_string()
                + "\n"
        })
        .collect()
}

fn health_json(s: &State) -> Value {
    match &s.life.health {
        None => Value::Null,
        Some(h) => json!({
            "Status": h.status,
            "FailingStreak": h.failing_streak,
            "Log": h.log.iter().map(|r| json!({
                "Start": clock::rfc3339_ms(r.start),
                "End": clock::rfc3339_ms(r.end),
                "ExitCode": r.exit_code,
                "Output": r.output,
            })).collect::<Vec<_>>(),
        }),
    }
}

/// The effective Entrypoint and Cmd, Docker's way (`--entrypoint` drops the image's Cmd).
fn entrypoint_and_cmd(c: &Config) -> (Value, Value) {
    let entrypoint = match &c.options.entrypoint {
        Some(e) if e.is_empty() => None,
        Some(e) => Some(vec![e.clone()]),
        None => c.exec.entrypoint.clone(),
    };
    let cmd = if !c.command.is_empty() {
        Some(c.command.clone())
    } else if c.options.entrypoint.is_some() {
        None
    } else {
        c.exec.cmd.clone()
    };
    (json!(entrypoint), json!(cmd))
}

/// `inspect` of one container.
pub fn inspect(root: &Root, s: &State) -> Value {
    let config = detached::load_config(root, &s.id).ok();
    let status = effective_status(s);
    let args = &s.life.command;
    let (entrypoint, cmd) = config
        .as_ref()
        .map_or((Value::Null, json!(args)), entrypoint_and_cmd);
    let (policy, retries) = config.as_ref().map_or(("no", 0), |c| c.restart.docker());
    json!({
        "Id": s.id,
        "Created": clock::rfc3339_ms(s.life.created),
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": status.as_str(),
            "Running": status == Status::Running,
            "Paused": false,
            "Restarting": status == Status::Restarting,
            "OOMKilled": s.life.oom_killed,
            "Dead": status == Status::Dead,
            "Pid": if status == Status::Running { s.life.pid } else { 0 },
            "ExitCode": s.life.exit_code,
            "Error": s.life.error,
            "StartedAt": clock::rfc3339_ms(s.life.started_at),
            "FinishedAt": clock::rfc3339_ms(s.life.finished_at),
            "Health": health_json(s),
        },
        "Image": config.as_ref().map(|c| c.image_id.to_string()),
        "Name": format!("/{}", s.name.clone().unwrap_or_default()),
        "RestartCount": s.life.restart_count,
        "LogPath": config.as_ref().map(|_| detached::log_path(root, &s.id)),
        "HostConfig": {
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": retries},
            "NetworkMode": config.as_ref().map_or("none", |c| match c.options.network {
                crate::spec::Network::None => "none",
                crate::spec::Network::Host => "host",
                crate::spec::Network::Bridge => c.options.net.network_name(),
            }),
        },
        "Config": {
            "Hostname": config.as_ref().map(|c| c.hostname.clone()),
            "User": config.as_ref().and_then(|c| c.options.user.clone().or(c.exec.user.clone())).unwrap_or_default(),
            "Env": config.as_ref().map(|c| c.env.clone()),
            "Cmd": cmd,
            "Entrypoint": entrypoint,
            "Image": s.image,
            "WorkingDir": config.as_ref().and_then(|c| c.options.workdir.clone().or(c.exec.working_dir.clone())).unwrap_or_default(),
            "Labels": config.as_ref().map(|c| c.labels.clone()).unwrap_or_default(),
            "StopSignal": config.as_ref().and_then(|c| c.options.stop_signal.clone().or(c.exec.stop_signal.clone())).unwrap_or_else(|| "SIGTERM".into()),
            "Healthcheck": config.as_ref().and_then(|c| c.health.as_ref()).map(|h| json!({
                "Test": h.test,
                "Interval": h.interval_ms * 1_000_000,
                "Timeout": h.timeout_ms * 1_000_000,
                "Retries": h.retries,
                "StartPeriod": h.start_period_ms * 1_000_000,
            })),
        },
        // Its address and ports while it runs on a network (its lease).
        "NetworkSettings": crate::network::view::settings(root, &s.id),
    })
}

/// `inspect` of one image.
pub fn inspect_image(record: &crate::image::store::ImageRecord) -> Value {
    let size: u64 = record.layers.iter().map(|l| l.size).sum();
    json!({
        "Id": record.config.to_string(),
        "RepoTags": [record.reference],
        "ManifestDigest": record.manifest.to_string(),
        "Architecture": record.platform.architecture,
        "Os": record.platform.os,
        "Size": size,
        "Config": record.image_config.config,
        "RootFS": {
            "Type": "layers",
            "Layers": record.diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
    })
}
