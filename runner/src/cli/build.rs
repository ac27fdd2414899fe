//! Command-line definitions of `runner build` and `runner builder` (push,
//! tag and history are plain subcommands of `cli.rs`), and
//! their conversion into [`BuildOptions`] (kept apart from `cli.rs` so the
//! build flags stay in one place).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use crate::build::{find_dockerignore, BuildOptions, Progress};
use crate::cli::NetworkArg;
use crate::image::client::Settings;
use crate::image::reference::Reference;

/// `runner build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (`-` reads it from stdin; default CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Name the image (repeatable).
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Set a build-time variable: KEY=VALUE (or KEY to take it from the environment).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs) only.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull base images even when they are local.
    #[arg(long)]
    pub pull: bool,
    /// Target platform (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Set a label on the image: KEY=VALUE.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Network for RUN steps.
    #[arg(long, value_enum, default_value = "none")]
    pub network: NetworkArg,
    /// Output: auto (plain here), plain, quiet.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
    /// Print only the image digest.
    #[arg(short, long)]
    pub quiet: bool,
    /// A secret for `RUN --mount=type=secret`: id=ID[,src=FILE|,env=VARIABLE]
    /// (repeatable; with neither, the variable named ID). Never stored in the image or the cache.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Push every -t reference to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// The build context directory.
    pub context: PathBuf,
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// On a terminal, plain text with each RUN's time and last lines redrawn
    /// while it runs; plain text otherwise.
    Auto,
    /// Plain text.
    Plain,
    /// Errors only.
    Quiet,
}

/// `runner builder ...`.
#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove all build cache.
    Prune,
}

fn key_value(kv: &str, what: &str) -> Result<(String, String), String> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ if what == "--build-arg" && !kv.is_empty() => match std::env::var(kv) {
            Ok(v) => Ok((kv.to_owned(), v)),
            Err(_) => Err(format!(
                "{what} {kv}: not set in the environment (give {kv}=VALUE)"
            )),
        },
        _ => Err(format!("{what} {kv:?}: expected KEY=VALUE")),
    }
}

/// One `--secret`: its id and bytes, read now (a file, or a variable).
fn secret(spec: &str) -> Result<(String, Vec<u8>), String> {
    let (mut id, mut src, mut env) = (None, None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_owned()),
            Some(("src" | "source", v)) => src = Some(v.to_owned()),
            Some(("env", v)) => env = Some(v.to_owned()),
            Some(("type", "file" | "env")) => {}
            _ => {
                return Err(format!(
                    "--secret {spec:?}: expected id=ID[,src=FILE|,env=VARIABLE]"
                ))
            }
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| format!("--secret {spec:?}: the id is missing (id=ID)"))?;
    let bytes = match (src, env) {
        (Some(f), _) => std::fs::read(&f).map_err(|e| format!("--secret id={id}: {f}: {e}"))?,
        (None, Some(v)) => std::env::var_os(&v)
            .ok_or_else(|| format!("--secret id={id}: variable {v} is not set"))?
            .into_encoded_bytes(),
        (None, None) => std::env::var_os(&id)
            .ok_or_else(|| {
                format!("--secret id={id}: give src=FILE or env=VARIABLE (no variable {id} is set either)")
            })?
            .into_encoded_bytes(),
    };
    Ok((id, bytes))
}

impl BuildArgs {
    /// The library's options (reads the Dockerfile and `.dockerignore`).
    pub fn options(&self, registries: Settings) -> Result<BuildOptions, String> {
        let (name, text, path) = match self.file.as_deref() {
            Some("-") => {
                let mut t = String::new();
                std::io::stdin()
                    .read_to_string(&mut t)
                    .map_err(|e| format!("reading the Dockerfile from stdin: {e}"))?;
                ("-".to_owned(), t, None)
            }
            Some(f) => {
                let t = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
                (f.to_owned(), t, Some(PathBuf::from(f)))
            }
            None => {
                let p = self.context.join("Dockerfile");
                let t = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                (p.display().to_string(), t, Some(p))
            }
        };
        if !self.context.is_dir() {
            return Err(format!(
                "{}: the build context must be a directory",
                self.context.display()
            ));
        }
        let tags = self
            .tags
            .iter()
            .map(|t| t.parse::<Reference>().map_err(|e| format!("-t {t}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(BuildOptions {
            dockerfile_name: name,
            dockerfile: text,
            dockerignore: find_dockerignore(path.as_deref().map(Path::new), &self.context),
            context: self.context.clone(),
            tags,
            build_args: self
                .build_args
                .iter()
                .map(|kv| key_value(kv, "--build-arg"))
                .collect::<Result<_, _>>()?,
            target: self.target.clone(),
            no_cache: self.no_cache,
            pull: self.pull,
            platform: self
                .platform
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| format!("--platform: {e}"))?,
            labels: self
                .labels
                .iter()
                .map(|kv| key_value(kv, "--label"))
                .collect::<Result<_, _>>()?,
            network: self.network.into(),
            secrets: self
                .secrets
                .iter()
                .map(|s| secret(s))
                .collect::<Result<_, _>>()?,
            registries,
            progress: match self.progress {
                _ if self.quiet => Progress::Quiet,
                ProgressArg::Quiet => Progress::Quiet,
                ProgressArg::Plain => Progress::Plain,
                ProgressArg::Auto if std::io::stderr().is_terminal() => Progress::Live,
                ProgressArg::Auto => Progress::Plain,
            },
        })
    }
}
