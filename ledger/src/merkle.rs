//! Binary Merkle trees with inclusion proofs, shaped as in RFC 9162 (Certificate Transparency
//! 2.0): the root of n > 1 leaves hashes the root of the first k leaves (k the largest power of
//! two below n) with the root of the rest. Built level by level, that is the tree in which an
//! unpaired last node moves up a level unchanged.
//!
//! Leaves and inner nodes are hashed under different tags, so an inner node can never pass for a
//! leaf. The caller hashes its leaves (with its own tag); this module only combines them.
//!
//! Pure: no I/O.

use crate::attest::tagged_hash;

/// Tag of an inner node: `tagged_hash(NODE_TAG, left || right)`.
pub const NODE_TAG: &str = "coffer/merkle-node/v1";
/// Most leaves a tree (and so a proof) may have: 2^20, far above any block.
pub const MAX_LEAVES: u32 = 1 << 20;
/// Longest inclusion path: the depth of a tree of [`MAX_LEAVES`] leaves.
pub const MAX_DEPTH: usize = 20;

/// Why an inclusion proof does not lead to a root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index is not below the leaf count, or the count is zero or above [`MAX_LEAVES`].
    #[error("leaf {index} of {count}: out of range (1..={MAX_LEAVES} leaves)")]
    OutOfRange {
        /// The claimed position.
        index: u32,
        /// The claimed number of leaves.
        count: u32,
    },
    /// The path is longer or shorter than a tree of `count` leaves allows for `index`.
    #[error("path of {len} hashes does not fit leaf {index} of {count}")]
    BadLength {
        /// Its length.
        len: usize,
        /// The claimed position.
        index: u32,
        /// The claimed number of leaves.
        count: u32,
    },
}

/// Hash of an inner node.
pub fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(left);
    both[32..].copy_from_slice(right);
    tagged_hash(NODE_TAG, &both)
}

/// A whole tree, kept to hand out proofs for every leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// `levels[0]` holds the leaves, the last level the root.
    levels: Vec<Vec<[u8; 32]>>,
}

impl Tree {
    /// The tree over `leaves` (already hashed), in order. `None` for no leaves or more than
    /// [`MAX_LEAVES`].
    pub fn new(leaves: Vec<[u8; 32]>) -> Option<Self> {
        if leaves.is_empty() || leaves.len() > MAX_LEAVES as usize {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node(left, right),
                    [alone] => *alone,
                    _ => unreachable!("chunks of two"),
                })
                .collect();
            levels.push(above);
        }
        Some(Tree { levels })
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Always false: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The root.
    pub fn root(&self) -> [u8; 32] {
        self.levels[self.levels.len() - 1][0]
    }

    /// The inclusion path of leaf `index`, bottom up; `None` if out of range.
    pub fn path(&self, index: usize) -> Option<Vec<[u8; 32]>> {
        if index >= self.len() {
            return None;
        }
        let mut path = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            // A last node without a sibling moves up unchanged: nothing to record.
            if let Some(hash) = level.get(sibling) {
                path.push(*hash);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// The root that `path` leads to from `leaf` at `index` in a tree of `count` leaves (RFC 9162
/// section 2.1.3.2). The caller compares it with the root it trusts.
pub fn root_from_path(
    leaf: [u8; 32],
    index: u32,
    count: u32,
    path: &[[u8; 32]],
) -> Result<[u8; 32], ProofError> {
    if count == 0 || count > MAX_LEAVES || index >= count {
        return Err(ProofError::OutOfRange { index, count });
    }
    let bad_length = || ProofError::BadLength {
        len: path.len(),
        index,
        count,
    };
    if path.len() > MAX_DEPTH {
        return Err(bad_length());
    }
    let (mut f, mut s) = (index, count - 1);
    let mut r = leaf;
    for p in path {
        if s == 0 {
            return Err(bad_length());
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            if f & 1 == 0 {
                // The last node of its level: skip the levels where it has no sibling.
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(bad_length());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| tagged_hash("test-leaf", &i.to_be_bytes()))
            .collect()
    }

    /// RFC 9162's recursive definition, written independently of [`Tree`].
    fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let k = leaves.len().next_power_of_two() / 2;
        node(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
    }

    fn count(n: usize) -> u32 {
        u32::try_from(n).expect("small test")
    }

    #[test]
    fn the_root_is_rfc_9162s_and_every_leaf_proves_its_inclusion() {
        for n in 1..=70 {
            let leaves = leaves(n);
            let tree = Tree::new(leaves.clone()).expect("non-empty");
            assert_eq!(tree.root(), reference_root(&leaves), "{n} leaves");
            for (i, leaf) in leaves.iter().enumerate() {
                let path = tree.path(i).expect("in range");
                let index = count(i);
                assert_eq!(
                    root_from_path(*leaf, index, count(n), &path),
                    Ok(tree.root()),
                    "leaf {i} of {n}"
                );
            }
            assert_eq!(tree.path(n), None);
        }
    }

    #[test]
    fn a_proof_proves_only_its_own_leaf_and_position() {
        let n = 13;
        let leaves = leaves(n);
        let tree = Tree::new(leaves.clone()).expect("non-empty");
        let root = tree.root();
        for i in 0..n {
            let path = tree.path(i).expect("in range");
            let index = count(i);
            // Another leaf at this position.
            let other = leaves[(i + 1) % n];
            assert_ne!(root_from_path(other, index, 13, &path), Ok(root));
            // This leaf claimed at another position.
            for j in (0..n).filter(|&j| j != i) {
                assert_ne!(root_from_path(leaves[i], count(j), 13, &path), Ok(root));
            }
            // (The size is not bound: leaf 0's path in 13 leaves is also its path in 14. Whoever
            // signs a root signs the leaf count with it.)
            // Any changed or missing path hash.
            for k in 0..path.len() {
                let mut bent = path.clone();
                bent[k][0] ^= 1;
                assert_ne!(root_from_path(leaves[i], index, 13, &bent), Ok(root));
                let mut short = path.clone();
                short.remove(k);
                assert!(root_from_path(leaves[i], index, 13, &short).is_err());
            }
            let mut long = path.clone();
            long.push(root);
            assert!(root_from_path(leaves[i], index, 13, &long).is_err());
        }
    }

    #[test]
    fn out_of_range_claims_are_refused() {
        let leaf = [7u8; 32];
        assert_eq!(
            root_from_path(leaf, 0, 0, &[]),
            Err(ProofError::OutOfRange { index: 0, count: 0 })
        );
        assert_eq!(
            root_from_path(leaf, 3, 3, &[]),
            Err(ProofError::OutOfRange { index: 3, count: 3 })
        );
        assert!(root_from_path(leaf, 0, MAX_LEAVES + 1, &[]).is_err());
        assert_eq!(root_from_path(leaf, 0, 1, &[]), Ok(leaf));
        assert!(root_from_path(leaf, 0, 1, &[leaf]).is_err());
        assert!(root_from_path(leaf, 0, 2, &vec![leaf; MAX_DEPTH + 1]).is_err());
        assert_eq!(Tree::new(Vec::new()), None);
    }
}
