//! `coffer-node start --config FILE`: runs one Coffer replica.

use coffer_node::{config::NodeConfig, node};
use std::{path::PathBuf, process::ExitCode};

const USAGE: &str = "usage: coffer-node start --config FILE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [cmd, flag, path] if cmd == "start" && flag == "--config" => PathBuf::from(path),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    let config = match NodeConfig::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("coffer-node: {e}");
            return ExitCode::from(2);
        }
    };
    match node::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer-node: {e}");
            ExitCode::FAILURE
        }
    }
}
