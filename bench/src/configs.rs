//! Named configurations for `coffer-bench compare`: `n<N>[-<byzantine>][-<store>][@half]`,
//! e.g. `n1-memory`, `n4-standalone`, `n4-forge`, `n4-silent-memory`, `n4-memory@half`.
//! The store defaults to memory and the replica set to honest; `@half` offers half the
//! throughput the same configuration measured earlier in the comparison (open loop).

use crate::cluster::{Byzantine, Store};

/// One configuration of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// The name as given.
    pub name: String,
    /// The name without `@half`.
    pub base: String,
    /// Replicas.
    pub replicas: usize,
    /// Storage mode.
    pub store: Store,
    /// Byzantine replica.
    pub byzantine: Byzantine,
    /// Offer half the peak measured for `base`.
    pub half: bool,
}

/// The default comparison.
pub const DEFAULT: &str = "n1-memory,n4-memory,n4-standalone,n4-forge,n4-silent";

/// Parses one name.
pub fn parse(name: &str) -> Result<Named, String> {
    let (base, half) = match name.split_once('@') {
        Some((b, "half")) => (b, true),
        Some((_, other)) => return Err(format!("{name:?}: unknown suffix @{other} (want @half)")),
        None => (name, false),
    };
    let mut parts = base.split('-');
    let n = parts
        .next()
        .and_then(|p| p.strip_prefix('n'))
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| format!("{name:?}: want n<replicas>-..., e.g. n4-memory"))?;
    let mut store = Store::Memory;
    let mut byzantine = Byzantine::None;
    for p in parts {
        match p {
            "memory" => store = Store::Memory,
            "standalone" => store = Store::Standalone,
            "sentinel" => store = Store::Sentinel,
            "cluster" => store = Store::Cluster,
            "forge" => byzantine = Byzantine::Forge,
            "silent" => byzantine = Byzantine::Silent,
            "honest" => byzantine = Byzantine::None,
            other => return Err(format!("{name:?}: unknown part {other:?}")),
        }
    }
    Ok(Named {
        name: name.to_owned(),
        base: base.to_owned(),
        replicas: n,
        store,
        byzantine,
        half,
    })
}

/// Parses a comma-separated list.
pub fn parse_list(list: &str) -> Result<Vec<Named>, String> {
    let v: Vec<Named> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err("no configurations".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        let c = parse("n4-forge-standalone@half").expect("parse");
        assert_eq!(
            (c.replicas, c.store, c.byzantine, c.half, c.base.as_str()),
            (
                4,
                Store::Standalone,
                Byzantine::Forge,
                true,
                "n4-forge-standalone"
            )
        );
        assert_eq!(parse("n1").expect("n1").store, Store::Memory);
        assert!(parse("4-memory").is_err());
        assert!(parse("n4-redis").is_err());
        assert!(parse("n4@double").is_err());
        assert_eq!(parse_list(DEFAULT).expect("default").len(), 5);
    }
}
