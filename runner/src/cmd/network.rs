//! The binary's side of `runner network ...` and `runner port`: calls the
//! library, prints what Docker prints. Part of `main.rs` (anyhow only here).

use anyhow::{bail, Result};

use runner::cli::network::NetworkCommand;
use runner::cli::Command;
use runner::container::{clock, records};
use runner::network::{self, view};
use runner::paths::Root;

/// Runs the network commands; `None` for any other command.
pub fn dispatch(root: &Root, command: &Command) -> Option<Result<i32>> {
    Some(match command {
        Command::Network(NetworkCommand::Create(args)) => (|| {
            let net = network::create(
                root,
                &args.name,
                args.subnet.as_deref(),
                args.gateway.as_deref(),
            )?;
            println!("{}", net.id);
            Ok(0)
        })(),
        Command::Network(NetworkCommand::Ls) => {
            println!(
                "{:<14} {:<20} {:<10} {:<18} BRIDGE",
                "NETWORK ID", "NAME", "DRIVER", "SUBNET"
            );
            for n in network::list(root) {
                println!(
                    "{:<14} {:<20} {:<10} {:<18} {}",
                    &n.id[..12],
                    n.name,
                    "bridge",
                    n.subnet.to_string(),
                    n.bridge
                );
            }
            Ok(0)
        }
        Command::Network(NetworkCommand::Inspect { names }) => (|| {
            let mut out = Vec::new();
            for name in names {
                match view::network(root, name, clock::rfc3339_ms) {
                    Some(v) => out.push(v),
                    None => bail!(network::Error::Unknown(name.clone())),
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        })(),
        Command::Network(NetworkCommand::Rm { names }) => {
            let mut code = 0;
            for name in names {
                match network::remove(root, name) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("runner: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        Command::Port(args) => (|| {
            let s = records::find(root, &args.container)?;
            let want = args.port.as_deref().map(|p| match p.contains('/') {
                true => p.to_owned(),
                false => format!("{p}/tcp"),
            });
            let mut code = 0;
            let ports: Vec<_> = view::ports(root, &s.id)
                .into_iter()
                .filter(|b| {
                    want.as_deref()
                        .is_none_or(|w| w == format!("{}/{}", b.container_port, b.proto.as_str()))
                })
                .collect();
            if ports.is_empty() && want.is_some() {
                eprintln!(
                    "runner: no public port {} published for {}",
                    want.clone().unwrap_or_default(),
                    args.container
                );
                code = 1;
            }
            for b in ports {
                match &want {
                    Some(_) => println!("{}:{}", b.host_ip_text(), b.host_port),
                    None => println!("{b}"),
                }
            }
            Ok(code)
        })(),
        _ => return None,
    })
}
