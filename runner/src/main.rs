//! The `runner` binary: parses the command line and calls the library.
#![forbid(unsafe_code)]

#[path = "cmd/containers.rs"]
mod containers;
#[path = "cmd/network.rs"]
mod network;

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use runner::cli::{Cli, Command};
use runner::container::{self, RunOptions, RunResult};
use runner::container::{bundle, state};
use runner::image::auth::{AuthFile, Credentials};
use runner::image::client::Client;
use runner::image::layers;
use runner::image::oci::Platform;
use runner::image::pull::{self, PullOptions};
use runner::image::reference::Reference;
use runner::image::store::{with_store, ImageStore};
use runner::paths::{self, Root};

fn pull_options(cli: &Cli, platform: Option<&str>) -> Result<PullOptions> {
    Ok(PullOptions {
        platform: platform.map(|p| p.parse::<Platform>()).transpose()?,
        registries: cli.registry_settings(),
    })
}

/// Makes Ctrl-C (SIGINT) end the process with "runner: interrupted" and
/// status 130. Call before any thread starts: every thread inherits the
/// blocked signal, and one thread waits for it. Not for `run`, whose
/// container must not inherit a blocked SIGINT.
fn exit_on_interrupt() -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGINT")?;
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            // Unpacks in progress are removed by the next command (their lock dies with us).
            eprintln!("runner: interrupted");
            std::process::exit(130);
        }
    });
    Ok(())
}

fn run(cli: &Cli) -> Result<i32> {
    // Not root in the initial user namespace: rootless mode, with the state
    // root under the user's home unless one was given.
    let rootless = runner::rootless::active();
    let root_dir = if rootless && cli.root == Path::new(paths::DEFAULT_ROOT) {
        runner::rootless::state_dir()?
    } else {
        cli.root.clone()
    };
    if let Command::Info = cli.command {
        print!("{}", runner::info::gather(&root_dir));
        return Ok(0);
    }
    if let Command::Assets { dir } = &cli.command {
        runner::assets::write("runner", <Cli as clap::CommandFactory>::command(), dir)?;
        return Ok(0);
    }
    let root = if rootless && runner::rootless::in_user_namespace() {
        // Started inside the user's namespace (a monitor's health check, a
        // runner run from a container): the root was checked by the command
        // that made it, and its parents are unmapped ids here.
        Root::new(root_dir)
    } else {
        let root = Root::prepare(&root_dir)?;
        if rootless {
            // Before any thread starts: `setns` of a user namespace needs one.
            runner::rootless::enter()?;
        }
        root
    };
    if matches!(cli.command, Command::Pull(_) | Command::Bundle(_)) {
        exit_on_interrupt()?;
    }
    // A monitor's command cleaned up a moment ago: it goes straight to its container.
    let monitor = matches!(cli.command, Command::Monitor { .. });
    if !monitor {
        state::clean_stale(&root).context("cleaning up after an earlier crash")?;
    }
    let (abandoned, abandoned_steps) = if monitor {
        (0, 0)
    } else {
        (
            layers::remove_abandoned_unpacks(&root),
            runner::build::step::remove_abandoned(&root),
        )
    };
    if let Some(result) = containers::dispatch(&root, &cli.command) {
        return result;
    }
    if let Some(result) = network::dispatch(&root, &cli.command) {
        return result;
    }
    match &cli.command {
        Command::Info => unreachable!("handled above"),
        Command::Pull(args) => {
            let reference: Reference = args.image.parse()?;
            let options = pull_options(cli, args.platform.as_deref())?;
            let record = with_store(&root, |store| {
                pull::pull(&root, store, &reference, &options)
            })?;
            println!("{}: {}", record.reference, record.manifest);
        }
        Command::Images => {
            println!(
                "{:<50} {:<20} {:<14} {:>10}",
                "REFERENCE", "DIGEST", "PLATFORM", "SIZE"
            );
            for r in with_store(&root, |store| store.list_images())? {
                let size: u64 = r.layers.iter().map(|l| l.size).sum();
                println!(
                    "{:<50} {:<20} {:<14} {:>10}",
                    r.reference,
                    &r.manifest.to_string()[..19],
                    r.platform.to_string(),
                    format!("{:.1}MB", size as f64 / 1e6)
                );
            }
        }
        Command::Rmi { images } => {
            let store = ImageStore::open(&root)?;
            for image in images {
                let reference: Reference = image.parse()?;
                let record = store.remove_image(&reference)?;
                println!("Untagged: {}", record.reference);
            }
        }
        Command::Prune => {
            let store = ImageStore::open(&root)?;
            let mut keep = state::layers_in_use(&root);
            for r in store.list_images()? {
                keep.extend(r.diff_ids);
            }
            let layers = layers::remove_unused_layers(&root, &keep)?;
            let blobs = store.remove_unused_blobs()?;
            // Build cache no image uses went with its blobs: drop its records.
            let records =
                runner::build::cache::remove_dangling(&root, |d| store.has_blob(d).unwrap_or(true));
            println!("removed {layers} layers, {blobs} blobs, {records} build cache records, {abandoned} interrupted unpacks and {abandoned_steps} interrupted build steps");
        }
        Command::Login(args) => {
            let password = match (&args.password, args.password_stdin) {
                (Some(p), false) => p.clone(),
                (None, true) => {
                    let mut p = String::new();
                    std::io::stdin().read_to_string(&mut p)?;
                    p.trim_end_matches(['\n', '\r']).to_owned()
                }
                _ => bail!("give exactly one of --password or --password-stdin"),
            };
            let creds = Credentials {
                username: args.username.clone(),
                password,
            };
            let probe: Reference = format!("{}/library/probe", args.server).parse()?;
            Client::new(&probe, &cli.registry_settings(), Some(creds.clone()))?.check_login()?;
            let mut auth = AuthFile::load(&root.auth_file())?;
            auth.set(&args.server, &creds);
            auth.save(&root.auth_file())?;
            println!("Login Succeeded");
        }
        Command::Run(args) if args.detach.detach => {
            if args.preserve_fds > 0 {
                bail!("--preserve-fds works only in the foreground: run without -d");
            }
            let pull = pull_options(cli, args.options.platform.as_deref())?;
            return containers::run_detached(&root, args, &pull);
        }
        Command::Run(args) => {
            let reference: Reference = args.image.parse()?;
            let pull = pull_options(cli, args.options.platform.as_deref())?;
            let options = RunOptions {
                preserve_fds: args.preserve_fds,
                ..RunOptions::from(&args.options)
            };
            // The store is closed when this returns: the sandbox clones next.
            let prepared =
                match container::prepare_cached(&root, &reference, &options, &args.command)? {
                    Some(p) => p,
                    None => with_store(&root, |store| {
                        container::prepare(&root, store, &reference, &pull, &options, &args.command)
                    })?,
                };
            let RunResult {
                code,
                oom_killed,
                setup_error,
            } = container::run(&root, &prepared)?;
            if let Some(message) = setup_error {
                eprintln!("runner: {message}");
            }
            if oom_killed {
                eprintln!(
                    "runner: container {} was killed: out of memory",
                    prepared.spec.id
                );
            }
            return Ok(code);
        }
        Command::Build(args) => {
            let options = args
                .options(cli.registry_settings())
                .map_err(anyhow::Error::msg)?;
            let built = runner::build::build(&root, &options)?;
            if options.progress != runner::build::Progress::Quiet {
                let n = |n: usize, what: &str| match n {
                    1 => format!("1 {what}"),
                    n => format!("{n} {what}s"),
                };
                eprintln!(
                    "built {} ({} run, {} cached)",
                    built.config,
                    n(built.ran, "RUN step"),
                    n(built.cached, "step")
                );
                for t in &options.tags {
                    eprintln!("naming to {t}");
                }
            }
            if args.push {
                with_store(&root, |store| -> Result<()> {
                    for t in &options.tags {
                        push_one(&root, store, t, &cli.registry_settings(), options.progress)?;
                    }
                    Ok(())
                })?;
            }
            println!("{}", built.manifest);
        }
        Command::Push { image } => {
            let reference: Reference = image.parse()?;
            with_store(&root, |store| {
                push_one(
                    &root,
                    store,
                    &reference,
                    &cli.registry_settings(),
                    runner::build::Progress::Plain,
                )
            })?;
        }
        Command::Tag { src, dst } => {
            let (src, dst): (Reference, Reference) = (src.parse()?, dst.parse()?);
            with_store(&root, |store| runner::image::push::tag(store, &src, &dst))?;
        }
        Command::History { image } => {
            let reference: Reference = image.parse()?;
            let record = with_store(&root, |store| store.get_image(&reference))?
                .ok_or_else(|| anyhow::anyhow!("no such image: {reference}"))?;
            print!("{}", runner::build::history::table(&record));
        }
        Command::Builder {
            command: runner::cli::build::BuilderCommand::Prune,
        } => {
            let n = runner::build::remove_cache(&root)?;
            let blobs = ImageStore::open(&root)?.remove_unused_blobs()?;
            println!("removed {n} build cache records and {blobs} blobs");
        }
        Command::Bundle(args) => {
            let reference: Reference = args.image.parse()?;
            let pull = pull_options(cli, args.options.platform.as_deref())?;
            with_store(&root, |store| -> Result<()> {
                let image = container::ensure_image(&root, store, &reference, &pull)?;
                let exec = image.image_config.config.clone().unwrap_or_default();
                let spec = container::build_spec(
                    &RunOptions::from(&args.options),
                    &exec,
                    &args.command,
                    container::new_id(),
                )?;
                bundle::write_bundle(store, &image, &spec, &args.dir)?;
                Ok(())
            })?;
            println!("{}", args.dir.display());
        }
        _ => unreachable!("container commands are dispatched above"),
    }
    Ok(0)
}

/// Pushes one local image, printing what happened to its blobs.
fn push_one(
    root: &Root,
    store: &ImageStore,
    reference: &Reference,
    settings: &runner::image::client::Settings,
    progress: runner::build::Progress,
) -> Result<()> {
    let pushed = runner::image::push::push(root, store, reference, reference, settings)?;
    if progress != runner::build::Progress::Quiet {
        eprintln!(
            "pushed {reference}: {} uploaded, {} mounted, {} already there",
            pushed.uploaded, pushed.mounted, pushed.existing
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = take_preserved_fds(&cli) {
        eprintln!("runner: {e:#}");
        return ExitCode::from(125);
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("runner: {e:#}");
            ExitCode::from(125)
        }
    }
}

/// `run --preserve-fds N`: before the runner opens anything, claims the
/// caller's descriptors 3 to 3+N-1 for the container's PID 1.
fn take_preserved_fds(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Run(args) if args.preserve_fds > 0 => {
            Ok(runner::sandbox::claim_preserved_fds(args.preserve_fds)?)
        }
        _ => Ok(()),
    }
}
