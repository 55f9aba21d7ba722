//! What a rebuilt index takes over from the one it replaces (`mifas reindex`): the records that
//! no stored object holds.

use super::{Index, IndexError, Result, TreeId};

/// What was carried over from the old index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CarriedOver {
    /// Portal users (names, roles, password hashes).
    pub users: u64,
    /// Storage Commitment transactions whose report was not delivered yet.
    pub commitments: u64,
    /// Copies on sites other than the one read, of the same object generation.
    pub placements: u64,
}

impl Index {
    /// Copy the portal users and the open Storage Commitment transactions of `old`, records
    /// that exist nowhere else. Keyed by user name and Transaction UID, so they cannot collide
    /// with anything the rebuild wrote.
    pub fn carry_over_records(&self, old: &Index) -> Result<CarriedOver> {
        let mut carried = CarriedOver::default();
        for (id, count) in [
            (TreeId::Users, &mut carried.users),
            (TreeId::Commitments, &mut carried.commitments),
        ] {
            for item in old.tree(id).iter() {
                let (k, v) = item.map_err(IndexError::Read)?;
                self.tree(id).insert(k, v).map_err(IndexError::Read)?;
                *count += 1;
            }
        }
        Ok(carried)
    }

    /// The copies `old` knew of on sites other than `read_site`, of the generation this index
    /// now holds for `uid` (a copy of another generation is garbage). Returns how many were
    /// recorded.
    pub fn carry_over_placements(&self, old: &Index, uid: &str, read_site: &str) -> Result<u64> {
        let mut recorded = 0;
        for (site, placement) in old.placements(uid)? {
            // `record_placement` keeps only copies of the generation indexed now.
            if site != read_site && self.record_placement(uid, &site, &placement, None)? {
                recorded += 1;
            }
        }
        Ok(recorded)
    }
}
