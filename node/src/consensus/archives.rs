//! Marshal's archives of finalized blocks and of their finalization certificates.
//!
//! By default a replica keeps every finalized block for ever, in commonware's immutable
//! archives (which cannot be pruned). With a block retention
//! ([`ConsensusConfig::retain_blocks`](super::ConsensusConfig::retain_blocks)) it uses
//! prunable archives instead, under other partition names, and the executor asks marshal to
//! prune blocks more than the retention below the executed height (see [`Pruner`]).
//!
//! The two layouts are not interchangeable: a replica refuses to start in one mode when its
//! data directory holds archives of the other ([`check_layout`]), rather than running with
//! a block archive that misses the blocks its marshal metadata says it has.

use commonware_codec::CodecShared;
use commonware_consensus::{
    Block as BlockTrait,
    marshal::store::{Blocks, Certificates},
    simplex::types::Finalization,
    types::Height,
};
use commonware_cryptography::{Digest, Digestible, certificate::Scheme as CertScheme};
use commonware_runtime::{Clock, Handle, Metrics, Storage, buffer::paged::CacheRef};
use commonware_storage::{
    archive::{self, Archive as _, Identifier, immutable, prunable},
    translator::EightCap,
};
use commonware_utils::{NZU64, NZUsize, sequence::Array};
use std::num::NonZeroU64;

/// Smallest accepted block retention. It must cover what a replica may still need to read
/// back from its own archive: blocks finalized but not yet in its store (the executor's lag,
/// and the writes a Redis failover can lose, about a second of blocks).
pub const MIN_RETAIN_BLOCKS: u64 = 1_024;
/// Largest section of a prunable archive (blocks per file; pruning removes whole sections).
const MAX_SECTION: u64 = 4_096;

/// Blocks per section of a prunable archive: a quarter of the retention (at most
/// [`MAX_SECTION`]), so at most a quarter more than the retention is ever kept.
fn section(retain: u64) -> NonZeroU64 {
    NonZeroU64::new((retain / 4).clamp(1, MAX_SECTION)).unwrap_or(NZU64!(1))
}

/// Decides when the executor asks marshal to prune: once the executed height has moved a
/// whole section past the last request, blocks below the last section boundary at least the
/// retention behind it may go.
///
/// It looks at the height it is told, not only at section boundaries: the executor runs ahead
/// of marshal's deliveries (blocks executed early), so the height seen when a delivery is
/// acknowledged can skip a boundary. A skipped boundary used to mean a section kept until the
/// next one.
#[derive(Debug)]
pub struct Pruner {
    retain: u64,
    requested: u64,
}

impl Pruner {
    /// A pruner for a retention of `retain` blocks that has asked for nothing yet (after a
    /// restart, its first request covers everything already old enough).
    pub fn new(retain: u64) -> Self {
        Self {
            retain,
            requested: 0,
        }
    }

    /// After executing `height`: the height below which blocks may be pruned, when it moved
    /// past a section boundary since the last request; `None` otherwise.
    pub fn after(&mut self, height: u64) -> Option<u64> {
        let section = section(self.retain).get();
        let point = height.saturating_sub(self.retain) / section * section;
        if point <= self.requested {
            return None;
        }
        self.requested = point;
        Some(point)
    }
}

/// Partition suffixes of the immutable layout: metadata, freezer table, key and value, ordinal.
const KEPT_KINDS: [&str; 5] = [
    "metadata",
    "freezer-table",
    "freezer-key",
    "freezer-value",
    "ordinal",
];
/// Partition suffixes of the prunable layout: metadata, key, value.
const PRUNED_KINDS: [&str; 3] = ["pruned-metadata", "pruned-key", "pruned-value"];

/// The partitions an archive named `name` uses, in either layout.
fn partitions(prefix: &str, name: &str, pruned: bool) -> Vec<String> {
    let kinds: &[&str] = if pruned { &PRUNED_KINDS } else { &KEPT_KINDS };
    kinds
        .iter()
        .map(|kind| format!("{prefix}-{name}-{kind}"))
        .collect()
}

/// Refuses a data directory whose block archives were written in the other layout.
pub async fn check_layout<E: Storage>(
    context: &E,
    prefix: &str,
    retain: Option<u64>,
) -> Result<(), String> {
    let pruned = retain.is_some();
    for name in ["blocks", "finalizations"] {
        for partition in partitions(prefix, name, !pruned) {
            if context.scan(&partition).await.is_ok_and(|b| !b.is_empty()) {
                return Err(if pruned {
                    format!(
                        "retain_blocks is set, but this data directory holds a block archive \
                         written without it (partition {partition}); start from an empty data \
                         directory or unset retain_blocks"
                    )
                } else {
                    format!(
                        "retain_blocks is not set, but this data directory holds a pruned block \
                         archive (partition {partition}); set retain_blocks again or start from \
                         an empty data directory"
                    )
                });
            }
        }
    }
    Ok(())
}

/// One of marshal's archives, kept whole or pruned.
pub enum Archives<E, K, V>
where
    E: Storage + Metrics + Clock,
    K: Array,
    V: CodecShared,
{
    /// Every item for ever (the default).
    Kept(immutable::Archive<E, K, V>),
    /// Items below the prune point are removed, a section at a time.
    Pruned(prunable::Archive<EightCap, E, K, V>),
}

impl<E, K, V> Archives<E, K, V>
where
    E: Storage + Metrics + Clock,
    K: Array,
    V: CodecShared,
{
    /// Opens the archive `name` in the layout `retain` selects.
    pub async fn open(
        context: E,
        prefix: &str,
        name: &str,
        page_cache: &CacheRef,
        codec_config: V::Cfg,
        retain: Option<u64>,
    ) -> Result<Self, archive::Error> {
        let partition = |kind: &str| format!("{prefix}-{name}-{kind}");
        match retain {
            None => {
                let [metadata, table, key, value, ordinal] = KEPT_KINDS.map(partition);
                immutable::Archive::init(
                    context,
                    immutable::Config {
                        metadata_partition: metadata,
                        freezer_table_partition: table,
                        freezer_table_initial_size: 1024,
                        freezer_table_resize_frequency: 10,
                        freezer_table_resize_chunk_size: 128,
                        freezer_key_partition: key,
                        freezer_key_page_cache: page_cache.clone(),
                        freezer_value_partition: value,
                        freezer_value_target_size: 64 * 1024 * 1024,
                        freezer_value_compression: None,
                        ordinal_partition: ordinal,
                        items_per_section: NZU64!(4096),
                        codec_config,
                        replay_buffer: NZUsize!(1 << 20),
                        freezer_key_write_buffer: NZUsize!(1 << 20),
                        freezer_value_write_buffer: NZUsize!(1 << 20),
                        ordinal_write_buffer: NZUsize!(1 << 20),
                    },
                )
                .await
                .map(Self::Kept)
            }
            Some(retain) => {
                let [metadata, key, value] = PRUNED_KINDS.map(partition);
                prunable::Archive::init(
                    context,
                    prunable::Config {
                        translator: EightCap,
                        metadata_partition: metadata,
                        key_partition: key,
                        key_page_cache: page_cache.clone(),
                        value_partition: value,
                        compression: None,
                        codec_config,
                        items_per_section: section(retain),
                        key_write_buffer: NZUsize!(1 << 20),
                        value_write_buffer: NZUsize!(1 << 20),
                        replay_buffer: NZUsize!(1 << 20),
                    },
                )
                .await
                .map(Self::Pruned)
            }
        }
    }

    async fn put(self, index: u64, key: K, value: &V) -> Result<Self, archive::Error> {
        match self {
            Self::Kept(a) => a.put(index, key, value).await.map(Self::Kept),
            Self::Pruned(a) => a.put(index, key, value).await.map(Self::Pruned),
        }
    }

    async fn sync(self) -> Result<Self, archive::Error> {
        match self {
            Self::Kept(a) => a.sync().await.map(Self::Kept),
            Self::Pruned(a) => a.sync().await.map(Self::Pruned),
        }
    }

    async fn start_sync(self) -> Result<(Self, Handle<()>), archive::Error> {
        match self {
            Self::Kept(a) => a.start_sync().await.map(|(a, h)| (Self::Kept(a), h)),
            Self::Pruned(a) => a.start_sync().await.map(|(a, h)| (Self::Pruned(a), h)),
        }
    }

    async fn get(&self, id: Identifier<'_, K>) -> Result<Option<V>, archive::Error> {
        match self {
            Self::Kept(a) => a.get(id).await,
            Self::Pruned(a) => a.get(id).await,
        }
    }

    async fn has(&self, id: Identifier<'_, K>) -> Result<bool, archive::Error> {
        match self {
            Self::Kept(a) => a.has(id).await,
            Self::Pruned(a) => a.has(id).await,
        }
    }

    async fn prune(self, min: u64) -> Result<Self, archive::Error> {
        match self {
            // Only reached if marshal prunes on its own; the immutable layout keeps all.
            Self::Kept(a) => Ok(Self::Kept(a)),
            Self::Pruned(a) => a.prune(min).await.map(Self::Pruned),
        }
    }

    fn last_index(&self) -> Option<u64> {
        match self {
            Self::Kept(a) => a.last_index(),
            Self::Pruned(a) => a.last_index(),
        }
    }

    fn ranges_from(&self, from: u64) -> Vec<(u64, u64)> {
        match self {
            Self::Kept(a) => a.ranges_from(from).collect(),
            Self::Pruned(a) => a.ranges_from(from).collect(),
        }
    }

    fn missing_items(&self, start: u64, max: usize) -> Vec<u64> {
        match self {
            Self::Kept(a) => a.missing_items(start, max),
            Self::Pruned(a) => a.missing_items(start, max),
        }
    }

    fn next_gap(&self, value: u64) -> (Option<u64>, Option<u64>) {
        match self {
            Self::Kept(a) => a.next_gap(value),
            Self::Pruned(a) => a.next_gap(value),
        }
    }
}

impl<E, B, C, S> Certificates for Archives<E, B, Finalization<S, C>>
where
    E: Storage + Metrics + Clock,
    B: Digest,
    C: Digest,
    S: CertScheme,
    Finalization<S, C>: CodecShared,
{
    type BlockDigest = B;
    type Commitment = C;
    type Scheme = S;
    type Error = archive::Error;

    async fn put(
        self,
        height: Height,
        digest: B,
        finalization: &Finalization<S, C>,
    ) -> Result<Self, archive::Error> {
        Archives::put(self, height.get(), digest, finalization).await
    }

    async fn sync(self) -> Result<Self, archive::Error> {
        Archives::sync(self).await
    }

    async fn start_sync(self) -> Result<(Self, Handle<()>), archive::Error> {
        Archives::start_sync(self).await
    }

    async fn get(
        &self,
        id: Identifier<'_, B>,
    ) -> Result<Option<Finalization<S, C>>, archive::Error> {
        Archives::get(self, id).await
    }

    async fn has(&self, height: Height) -> Result<bool, archive::Error> {
        Archives::has(self, Identifier::Index(height.get())).await
    }

    async fn prune(self, min: Height) -> Result<Self, archive::Error> {
        Archives::prune(self, min.get()).await
    }

    fn last_index(&self) -> Option<Height> {
        Archives::last_index(self).map(Height::new)
    }

    fn ranges_from(&self, from: Height) -> impl Iterator<Item = (Height, Height)> {
        Archives::ranges_from(self, from.get())
            .into_iter()
            .map(|(s, e)| (Height::new(s), Height::new(e)))
    }
}

impl<E, B> Blocks for Archives<E, <B as Digestible>::Digest, B>
where
    E: Storage + Metrics + Clock,
    B: BlockTrait + CodecShared,
{
    type Block = B;
    type Error = archive::Error;

    async fn put(self, digest: B::Digest, block: &B) -> Result<Self, archive::Error> {
        Archives::put(self, block.height().get(), digest, block).await
    }

    async fn sync(self) -> Result<Self, archive::Error> {
        Archives::sync(self).await
    }

    async fn start_sync(self) -> Result<(Self, Handle<()>), archive::Error> {
        Archives::start_sync(self).await
    }

    async fn get(&self, id: Identifier<'_, B::Digest>) -> Result<Option<B>, archive::Error> {
        Archives::get(self, id).await
    }

    async fn prune(self, min: Height) -> Result<Self, archive::Error> {
        Archives::prune(self, min.get()).await
    }

    fn missing_items(&self, start: Height, max: usize) -> Vec<Height> {
        Archives::missing_items(self, start.get(), max)
            .into_iter()
            .map(Height::new)
            .collect()
    }

    fn next_gap(&self, value: Height) -> (Option<Height>, Option<Height>) {
        let (a, b) = Archives::next_gap(self, value.get());
        (a.map(Height::new), b.map(Height::new))
    }

    fn last_index(&self) -> Option<Height> {
        Archives::last_index(self).map(Height::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_once_per_section_and_keeps_the_retention() {
        // Retention 1,024: sections of 256 blocks.
        let mut pruner = Pruner::new(1_024);
        assert_eq!(pruner.after(1_024), None, "nothing is old enough yet");
        assert_eq!(pruner.after(1_279), None);
        assert_eq!(pruner.after(1_280), Some(256));
        assert_eq!(pruner.after(1_281), None, "once per section");
        assert_eq!(pruner.after(1_535), None);
        assert_eq!(pruner.after(1_536), Some(512));
        // Large retentions: sections stop growing at MAX_SECTION.
        assert_eq!(section(1_000_000).get(), MAX_SECTION);
        let mut pruner = Pruner::new(1_000_000);
        assert_eq!(pruner.after(1_000_000 + MAX_SECTION - 1), None);
        assert_eq!(pruner.after(1_000_000 + MAX_SECTION), Some(MAX_SECTION));
    }

    #[test]
    fn a_height_past_a_boundary_still_prunes() {
        // The executor ran ahead of the delivery being acknowledged: 1,536 was never seen.
        let mut pruner = Pruner::new(1_024);
        assert_eq!(pruner.after(1_280), Some(256));
        assert_eq!(
            pruner.after(1_540),
            Some(512),
            "the boundary 1,536 was passed"
        );
        assert_eq!(pruner.after(1_541), None);
        // A restarted replica asks at once for everything old enough.
        let mut restarted = Pruner::new(1_024);
        assert_eq!(restarted.after(5_000), Some(3_840));
        assert_eq!(restarted.after(4_000), None, "never backwards");
    }

    #[test]
    fn the_layouts_use_distinct_partitions() {
        let kept = partitions("p", "blocks", false);
        let pruned = partitions("p", "blocks", true);
        assert!(kept.iter().all(|k| !pruned.contains(k)));
        assert!(kept.contains(&"p-blocks-ordinal".to_string()));
        assert!(pruned.contains(&"p-blocks-pruned-value".to_string()));
    }
}
