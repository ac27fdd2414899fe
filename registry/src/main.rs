//! The `registry` binary: command-line parsing and nothing else.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use registry::config::{AuthConfig, Config, LogFormat, TlsConfig};

/// `registry --version`: the version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STRATA_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(name = "registry", version = VERSION, about = "Strata: a private OCI registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format [default: text, or the config's log_format]; colours only on a terminal.
    #[arg(long, global = true, env = "STRATA_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OCI Distribution API.
    Serve(ServeArgs),
    /// Collect garbage: sweep blobs no manifest references (after the grace period)
    /// and stale uploads; prints what it freed.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Only show what would be freed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Apply the `[[retention]]` rules now: delete the tags and manifests they
    /// let go, printing each with the reason (the blobs go with the next GC).
    Retention {
        #[command(flatten)]
        store: StoreArgs,
        /// Only show what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every blob and check that metadata and stored bytes agree; exits 1 on any problem.
    Fsck {
        #[command(flatten)]
        store: StoreArgs,
        /// Move corrupt blobs to quarantine/ and drop them from the metadata.
        #[arg(long)]
        repair: bool,
    },
    /// Pre-fetch from upstreams what their filters select (`repositories`,
    /// `tags`, `exclude` in `[[upstream]]`); resumes where a run stopped.
    Sync {
        #[command(flatten)]
        store: StoreArgs,
        /// Only list the tags that would be fetched.
        #[arg(long)]
        dry_run: bool,
        /// Only this upstream (all with `repositories` otherwise).
        name: Option<String>,
    },
    /// Show each `[[quota]]`'s usage (distinct bytes, limit, dedup saving)
    /// and the bytes of each of its repositories.
    Usage {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The webhook outbox's dead-letter list: events that failed `max_attempts` times.
    Events {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Print the audit log's entries (`[audit] file`) that match, one JSON object a line.
    Audit {
        #[command(flatten)]
        store: StoreArgs,
        /// Only entries since this time (2026-12-02T01:00:00Z, 2026-12-02) or age (90m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only entries of this user.
        #[arg(long)]
        user: Option<String>,
        /// Only entries about repositories matching this glob (`*`, `**`).
        #[arg(long)]
        repository: Option<String>,
    },
    /// Add or replace a user in an htpasswd file (bcrypt). At a terminal the
    /// password is prompted for twice, without echo; otherwise it is read from stdin.
    Htpasswd {
        /// The htpasswd file (created if missing).
        file: PathBuf,
        /// The user name.
        user: String,
    },
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(name = "__assets", hide = true)]
    Assets {
        /// Output directory.
        dir: PathBuf,
    },
}

/// What `registry events` does.
#[derive(Subcommand)]
enum EventsAction {
    /// List the dead events, oldest first.
    Dead {
        /// Print one JSON object a line (with the event itself) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead events again, due now with their failures forgotten.
    Retry {
        /// The events' SEQ numbers (from `registry events dead`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        seq: Vec<i64>,
        /// Every dead event.
        #[arg(long)]
        all: bool,
    },
}

/// Where the store is; shared by `serve`, `gc` and `fsck`.
/// Flags override the config file; environment variables stand in for flags.
#[derive(Args, Clone)]
struct StoreArgs {
    /// TOML configuration file.
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: a file store and a SQLite database inside it [default: ./data].
    #[arg(long, env = "STRATA_DATA")]
    data: Option<PathBuf>,
    /// Object storage URL: file:///path or s3://bucket/prefix (AWS_* variables configure S3).
    #[arg(long, env = "STRATA_STORAGE")]
    storage: Option<String>,
    /// Database URL: sqlite://path or postgres://...
    #[arg(long, env = "STRATA_DATABASE")]
    database: Option<String>,
}

/// `registry serve` flags.
#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "STRATA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Accept manifests that reference blobs or child manifests not pushed to the repository.
    #[arg(long, env = "STRATA_ALLOW_SPARSE")]
    allow_sparse: bool,
    /// Turn on authentication with this htpasswd file (bcrypt entries).
    #[arg(long, env = "STRATA_HTPASSWD")]
    htpasswd: Option<PathBuf>,
    /// TLS certificate chain (PEM); serve HTTPS with --tls-key.
    #[arg(long, env = "STRATA_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "STRATA_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Free bytes on local storage under which new uploads get 507 [default: 1 GiB or 5%
    /// of the filesystem, whichever is smaller; 0: off].
    #[arg(long, env = "STRATA_FREE_SPACE_RESERVE", value_name = "BYTES")]
    free_space_reserve: Option<u64>,
    /// Believe `Forwarded` / `X-Forwarded-*` headers from this reverse proxy
    /// (an address or CIDR; repeatable, or comma-separated in the variable).
    #[arg(
        long,
        env = "STRATA_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    trusted_proxy: Vec<String>,
    /// Do not serve the web UI at /ui/ (`ui = false` in the config file).
    #[arg(long, env = "STRATA_NO_UI")]
    no_ui: bool,
    /// Mirror an upstream registry under the path prefix NAME (repeatable;
    /// `[[upstream]]` in the config file for the other settings).
    #[arg(long, value_name = "NAME=URL")]
    upstream: Vec<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Written, not printed: a closed stderr must not turn into a panic.
            let _ = writeln!(std::io::stderr(), "registry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let format = cli.log_format;
    match cli.command {
        Command::Serve(args) => {
            let config = serve_config(args.clone(), format)?;
            let _flush = registry::log::init(config.log_format);
            // SIGHUP: the same file, flags and variables, read again.
            let reload: registry::reload::Loader =
                Box::new(move || serve_config(args.clone(), format).map_err(|e| format!("{e:#}")));
            Ok(
                tokio::runtime::Runtime::new()?
                    .block_on(registry::server::serve(config, reload))?,
            )
        }
        Command::Audit {
            store,
            since,
            user,
            repository,
        } => audit(store_config(store, format)?, since, user, repository),
        Command::Usage { store, json } => {
            let config = store_config(store, format)?;
            config.require_data_dir()?;
            tokio::runtime::Runtime::new()?.block_on(usage(config, json))
        }
        Command::Events { store, action } => {
            let config = store_config(store, format)?;
            config.require_data_dir()?;
            tokio::runtime::Runtime::new()?.block_on(events(config, action))
        }
        Command::Htpasswd { file, user } => Ok(registry::htpasswd::run(&file, &user)?),
        Command::Assets { dir } => Ok(registry::assets::write("registry", Cli::command(), &dir)?),
        Command::Sync {
            store,
            dry_run,
            name,
        } => {
            let config = store_config(store, format)?;
            let _flush = registry::log::init(config.log_format);
            tokio::runtime::Runtime::new()?.block_on(sync(config, name, dry_run))
        }
        Command::Gc { store, dry_run } => {
            let config = store_config(store, format)?;
            config.require_data_dir()?;
            let _flush = registry::log::init(config.log_format);
            tokio::runtime::Runtime::new()?.block_on(gc(config, dry_run))
        }
        Command::Retention {
            store,
            dry_run,
            json,
        } => {
            let config = store_config(store, format)?;
            config.require_data_dir()?;
            let _flush = registry::log::init(config.log_format);
            tokio::runtime::Runtime::new()?.block_on(retention(config, dry_run, json))
        }
        Command::Fsck { store, repair } => {
            let config = store_config(store, format)?;
            config.require_data_dir()?;
            let _flush = registry::log::init(config.log_format);
            tokio::runtime::Runtime::new()?.block_on(fsck(config, repair))
        }
    }
}

fn store_config(args: StoreArgs, log_format: Option<LogFormat>) -> anyhow::Result<Config> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(format) = log_format {
        config.log_format = format;
    }
    if let Some(v) = args.data {
        config.data = v;
    }
    if args.storage.is_some() {
        config.storage = args.storage;
    }
    if args.database.is_some() {
        config.database = args.database;
    }
    Ok(config)
}

async fn gc(config: Config, dry_run: bool) -> anyhow::Result<()> {
    let store = store::Store::open(&config.store()).await?;
    // Mirrored content not pulled for its upstream's keep_for goes first.
    let mirror = registry::mirror::Mirror::new(&config.upstreams).map_err(anyhow::Error::msg)?;
    let expired = mirror.expire(&store, dry_run).await?;
    let report = store.gc(&config.gc.options(dry_run)).await?;
    if !report.ran {
        println!("gc: another replica holds the GC lock; nothing done");
        return Ok(());
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for (repo, digest) in &expired {
        println!("{verb} manifest {repo}@{digest} (mirrored, not pulled for keep_for)");
    }
    for (repo, digest) in &report.manifests {
        println!("{verb} manifest {repo}@{digest}");
    }
    for (digest, size) in &report.blobs {
        println!("{verb} blob {digest} ({size} bytes)");
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!(
        "gc: {verb} {} bytes in {} blobs; {} manifests, {} unused links, {} stale uploads, \
         {} orphaned objects",
        report.bytes_freed,
        report.blobs.len(),
        report.manifests.len() + expired.len(),
        report.links,
        report.uploads,
        report.orphans
    );
    Ok(())
}

async fn retention(config: Config, dry_run: bool, json: bool) -> anyhow::Result<()> {
    use registry::policy::{pruning, retention::RetentionRule, Policies};
    let rules = RetentionRule::all(&config.retention).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !rules.is_empty(),
        "retention: the configuration has no [[retention]] rule"
    );
    let policies = Policies::new(&config.immutable, &config.quotas).map_err(anyhow::Error::msg)?;
    let events = registry::events::Events::new(&config.webhooks).map_err(anyhow::Error::msg)?;
    let store = store::Store::open(&config.store()).await?;
    let actor = registry::events::Actor {
        user: "retention".to_owned(),
        client: None,
        host: config.listen.to_string(),
    };
    let pass = pruning::Pass {
        rules: &rules,
        only: None,
        policies: &policies,
        events: &events,
        actor: &actor,
        dry_run,
    };
    let report = pruning::run(&store, &pass).await;
    store.close().await;
    let Some(report) = report? else {
        println!("retention: another replica holds the retention lock; nothing done");
        return Ok(());
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    for d in &report.deleted {
        println!("{verb} {d}");
    }
    for d in &report.skipped {
        println!("skipped {d} (it changed meanwhile)");
    }
    let (tags, manifests) = report.counts();
    println!("retention: {verb} {tags} tags and {manifests} manifests");
    Ok(())
}

async fn usage(config: Config, json: bool) -> anyhow::Result<()> {
    let policies = registry::policy::Policies::new(&config.immutable, &config.quotas)
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !policies.quotas().is_empty(),
        "usage: the configuration has no [[quota]] table; add one (see docs/policies.md)"
    );
    let store = store::Store::open(&config.store()).await?;
    let report = registry::policy::quota::usage(&store, &policies).await?;
    store.close().await;
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<_> = report.iter().map(|q| q.json()).collect();
        writeln!(out, "{}", serde_json::json!({ "quotas": all }))?;
    } else {
        write!(out, "{}", registry::policy::quota::render_text(&report))?;
    }
    Ok(())
}

async fn events(config: Config, action: EventsAction) -> anyhow::Result<()> {
    let store = store::Store::open(&config.store()).await?;
    let mut out = std::io::stdout().lock();
    match action {
        EventsAction::Dead { json } => {
            let dead = store.dead_events(u32::MAX).await?;
            if !json {
                writeln!(
                    out,
                    "{:<8} {:<20} {:<30} {:<28} {:>8}  LAST ERROR",
                    "SEQ", "WEBHOOK", "REPOSITORY", "TYPE", "ATTEMPTS"
                )?;
            }
            for e in &dead {
                let event: serde_json::Value =
                    serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null);
                if json {
                    let line = serde_json::json!({
                        "seq": e.seq, "webhook": e.target, "repository": e.repo,
                        "id": e.event_id, "attempts": e.attempts,
                        "last_error": e.last_error, "event": event,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    let kind = event["type"].as_str().unwrap_or("?");
                    writeln!(
                        out,
                        "{:<8} {:<20} {:<30} {:<28} {:>8}  {}",
                        e.seq,
                        e.target,
                        e.repo,
                        kind.trim_start_matches("io.strata.registry."),
                        e.attempts,
                        e.last_error.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        EventsAction::Retry { seq, all } => {
            let revived = store
                .revive_events((!all).then_some(seq.as_slice()))
                .await?;
            writeln!(
                out,
                "events: {revived} dead event(s) queued again; a running registry delivers them"
            )?;
        }
    }
    store.close().await;
    Ok(())
}

fn audit(
    config: Config,
    since: Option<String>,
    user: Option<String>,
    repository: Option<String>,
) -> anyhow::Result<()> {
    let Some(file) = config.audit.map(|a| a.file) else {
        anyhow::bail!("audit: the configuration has no [audit] file");
    };
    anyhow::ensure!(
        file.as_os_str() != "-",
        "audit: [audit] file is stdout (\"-\"); nothing to read"
    );
    let filter = registry::audit::Filter {
        since_ms: since
            .as_deref()
            .map(registry::audit::Filter::since)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        user,
        repository,
    };
    let input = std::fs::File::open(&file)
        .map_err(|e| anyhow::anyhow!("audit: cannot read {}: {e}", file.display()))?;
    registry::audit::query(
        std::io::BufReader::new(input),
        &filter,
        std::io::stdout().lock(),
    )?;
    Ok(())
}

async fn sync(config: Config, name: Option<String>, dry_run: bool) -> anyhow::Result<()> {
    let mirror = registry::mirror::Mirror::new(&config.upstreams).map_err(anyhow::Error::msg)?;
    let store = store::Store::open(&config.store()).await?;
    let holder = std::sync::Arc::new(registry::mirror::blobs::OwnedStore(store));
    let progress = |line: String| {
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    let report = mirror
        .sync(holder.clone(), name.as_deref(), dry_run, &progress)
        .await?;
    holder.0.close().await;
    let verb = if dry_run { "would fetch" } else { "synced" };
    println!(
        "sync: {verb} {} tags, {} failed",
        report.tags, report.failed
    );
    if report.failed > 0 {
        anyhow::bail!(
            "sync: {} tag(s) failed; run it again to resume",
            report.failed
        );
    }
    Ok(())
}

async fn fsck(config: Config, repair: bool) -> anyhow::Result<()> {
    let store = store::Store::open(&config.store()).await?;
    let problems = store.fsck(repair).await?;
    for p in &problems {
        match p {
            store::Problem::Missing { digest } => {
                println!("missing: {digest} is in the metadata but not stored")
            }
            store::Problem::Orphan { digest } => {
                println!("orphan: {digest} is stored but not in the metadata")
            }
            store::Problem::Corrupt { digest, manifests } => {
                let action = if repair { ", quarantined" } else { "" };
                println!("corrupt: {digest} does not match its content{action}");
                for (repo, m) in manifests {
                    println!("  affects manifest {repo}@{m}");
                }
            }
        }
    }
    if problems.is_empty() {
        println!("fsck: no problems");
        Ok(())
    } else {
        anyhow::bail!("fsck: {} problem(s) found", problems.len())
    }
}

fn serve_config(args: ServeArgs, log_format: Option<LogFormat>) -> anyhow::Result<Config> {
    let mut config = store_config(args.store, log_format)?;
    if let Some(v) = args.listen {
        config.listen = v;
    }
    config.allow_sparse |= args.allow_sparse;
    config.ui &= !args.no_ui;
    if let Some(file) = args.htpasswd {
        config.auth.get_or_insert_with(AuthConfig::default).htpasswd = Some(file);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig { cert, key });
    }
    if args.free_space_reserve.is_some() {
        config.limits.free_space_reserve_bytes = args.free_space_reserve;
    }
    config.trusted_proxies.extend(args.trusted_proxy);
    for flag in &args.upstream {
        let upstream = registry::mirror::config::UpstreamConfig::from_flag(flag)
            .map_err(anyhow::Error::msg)?;
        config.upstreams.retain(|u| u.name != upstream.name);
        config.upstreams.push(upstream);
    }
    Ok(config)
}
