//! Writes a dev CA and one server certificate per replica (see `fixtures/tls/gen.sh`).
//!
//! Usage: `gen_dev_tls OUT_DIR REPLICA... [--san NAME_OR_IP]...`

use coffer_node::api::tls::{generate_dev_pki, write_dev_pki};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: gen_dev_tls OUT_DIR REPLICA... [--san NAME_OR_IP]...");
        return ExitCode::from(2);
    };
    let (mut replicas, mut sans) = (Vec::new(), Vec::new());
    while let Some(arg) = args.next() {
        if arg == "--san" {
            match args.next() {
                Some(san) => sans.push(san),
                None => {
                    eprintln!("--san needs a value");
                    return ExitCode::from(2);
                }
            }
        } else {
            replicas.push(arg);
        }
    }
    if replicas.is_empty() {
        eprintln!("at least one replica name is required");
        return ExitCode::from(2);
    }
    let replicas: Vec<&str> = replicas.iter().map(String::as_str).collect();
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    let pki = match generate_dev_pki(&replicas, &sans) {
        Ok(pki) => pki,
        Err(e) => {
            eprintln!("cannot generate certificates: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = write_dev_pki(&pki, &out) {
        eprintln!("cannot write to {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "wrote ca.pem, ca.key and {} server pairs to {}",
        replicas.len(),
        out.display()
    );
    ExitCode::SUCCESS
}
