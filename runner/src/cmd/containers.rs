//! The binary's side of the container commands: calls the library, prints
//! what Docker prints. Part of `main.rs` (anyhow only here).

use std::io::Write;

use anyhow::{bail, Result};

use runner::cli::containers::ContainerCommand;
use runner::cli::{Command, RunArgs};
use runner::container::exec::ExecOptions;
use runner::container::{self, clock, control, detached, logs, records, view, RunOptions};
use runner::image::pull::PullOptions;
use runner::image::reference::Reference;
use runner::image::store::with_store;
use runner::paths::Root;

/// `run -d`: prepares the container, records it, starts its monitor and
/// prints the full id once PID 1 runs.
pub fn run_detached(root: &Root, args: &RunArgs, pull: &PullOptions) -> Result<i32> {
    let detach = args.detach.options()?;
    let reference: Reference = args.image.parse()?;
    let options = RunOptions::from(&args.options);
    let prepared = match container::prepare_cached(root, &reference, &options, &args.command)? {
        Some(p) => p,
        None => with_store(root, |store| {
            container::prepare(root, store, &reference, pull, &options, &args.command)
        })?,
    };
    let config = detached::create(root, &prepared, &options, &args.command, &detach)?;
    match detached::start(root, &config.id) {
        Ok(()) => {
            println!("{}", config.id);
            Ok(0)
        }
        Err(e) => {
            eprintln!("runner: {e}");
            Ok(e.code)
        }
    }
}

fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut code = 0;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("runner: {e:#}");
            code = 1;
        }
    }
    Ok(code)
}

fn logs(root: &Root, args: &runner::cli::containers::LogsArgs) -> Result<i32> {
    let s = records::find(root, &args.container)?;
    let config = detached::load_config(root, &s.id)
        .ok()
        .filter(|_| s.detached);
    let Some(config) = config else {
        bail!(
            "container {} runs in the foreground of its runner: its output goes there, not to a log",
            args.container
        );
    };
    let tail = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number, or all"))?,
        ),
    };
    let since = match &args.since {
        None => None,
        Some(t) => Some(clock::parse_since(t, clock::now_ns()).ok_or_else(|| {
            anyhow::anyhow!("invalid --since {t:?}: RFC 3339, Unix seconds or a duration like 10m")
        })?),
    };
    let query = logs::Query {
        tail,
        since,
        timestamps: args.timestamps,
    };
    let path = detached::log_path(root, &s.id);
    let (entries, offset) = logs::read(&path, config.log, &query)?;
    for e in &entries {
        logs::print(e, &query)?;
    }
    if args.follow && path.exists() {
        logs::follow(root, &s.id, &path, offset, &query)?;
    }
    Ok(0)
}

fn inspect(root: &Root, names: &[String]) -> Result<i32> {
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        match records::find(root, n) {
            Ok(s) => out.push(view::inspect(root, &s)),
            Err(records::LookupError::Ambiguous { .. }) => {
                eprintln!("runner: {}", records::find(root, n).unwrap_err());
                code = 1;
            }
            Err(not_found) => {
                let image = n
                    .parse::<Reference>()
                    .ok()
                    .and_then(|r| with_store(root, |store| store.get_image(&r)).ok().flatten());
                match image {
                    Some(record) => out.push(view::inspect_image(&record)),
                    None => {
                        eprintln!("runner: {not_found} (nor image)");
                        code = 1;
                    }
                }
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &out)?;
    writeln!(stdout)?;
    Ok(code)
}

/// The container commands; `None` for the others.
pub fn dispatch(root: &Root, command: &Command) -> Option<Result<i32>> {
    Some(match command {
        Command::Ps(args) => (|| {
            let filters = view::Filters::parse(&args.filters)?;
            let rows = view::rows(root, &records::all(root), args.all, &filters);
            let text = match (args.quiet, args.format.as_deref()) {
                (true, _) => view::quiet(&rows),
                (false, Some("json")) => view::json_lines(&rows),
                (false, None | Some("table")) => view::table(&rows),
                (false, Some(f)) => bail!("unsupported --format {f:?}: use json or table"),
            };
            print!("{text}");
            Ok(0)
        })(),
        Command::Logs(args) => logs(root, args),
        Command::Stop(args) => each(&args.containers, |n| {
            control::stop(root, n, args.time)?;
            println!("{n}");
            Ok(())
        }),
        Command::Kill(args) => each(&args.containers, |n| {
            control::kill(root, n, args.signal.as_deref())?;
            println!("{n}");
            Ok(())
        }),
        Command::Wait { containers } => each(containers, |n| {
            println!("{}", control::wait(root, n)?);
            Ok(())
        }),
        Command::Start { containers } => each(containers, |n| {
            control::start(root, n)?;
            println!("{n}");
            Ok(())
        }),
        Command::Restart(args) => each(&args.containers, |n| {
            control::restart(root, n, args.time)?;
            println!("{n}");
            Ok(())
        }),
        Command::Rm(args) => each(&args.containers, |n| {
            control::remove(root, n, args.force)?;
            println!("{n}");
            Ok(())
        }),
        Command::Inspect { names } => inspect(root, names),
        Command::Exec(args) => (|| {
            let result = container::exec::exec(
                root,
                &args.container,
                &args.command,
                &ExecOptions::from(args),
            )?;
            if let Some(message) = result.setup_error {
                eprintln!("runner: {message}");
            }
            Ok(result.code)
        })(),
        Command::Container(ContainerCommand::Prune { .. }) => (|| {
            println!("Deleted Containers:");
            for id in control::prune(root)? {
                println!("{id}");
            }
            Ok(0)
        })(),
        Command::Monitor { id } => container::monitor::main(root, id).map_err(Into::into),
        _ => return None,
    })
}
