//! Portal users: name → [`UserRecord`] (argon2id PHC hash, role, creation time). The archive
//! owns the logic (validation, hashing); this is only the storage.

use serde::{Deserialize, Serialize};

use super::{Index, IndexError, Result, TreeId, decode, encode};

/// One portal account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// argon2id PHC string (`$argon2id$v=19$...`).
    pub phc: String,
    /// "viewer", "uploader" or "admin": kept as text so the index knows nothing of the web
    /// layer's roles.
    pub role: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

impl Index {
    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.get(TreeId::Users, name)
    }

    /// Insert `name` unless it exists; `false` when it did.
    pub fn insert_user(&self, name: &str, record: &UserRecord) -> Result<bool> {
        let value = encode(record)?;
        let swapped = self
            .tree(TreeId::Users)
            .compare_and_swap(name.as_bytes(), None::<&[u8]>, Some(value))
            .map_err(|e| IndexError::Write(e.to_string()))?;
        Ok(swapped.is_ok())
    }

    /// Replace the record of an existing user; `false` when there is none.
    pub fn update_user(&self, name: &str, change: impl Fn(&mut UserRecord)) -> Result<bool> {
        let tree = self.tree(TreeId::Users);
        // Compare-and-swap loop: a concurrent change of the same user is retried, never lost.
        loop {
            let Some(old) = tree.get(name.as_bytes()).map_err(IndexError::Read)? else {
                return Ok(false);
            };
            let mut record: UserRecord = decode(TreeId::Users, &old)?;
            change(&mut record);
            let swapped = tree
                .compare_and_swap(name.as_bytes(), Some(old), Some(encode(&record)?))
                .map_err(|e| IndexError::Write(e.to_string()))?;
            if swapped.is_ok() {
                return Ok(true);
            }
        }
    }

    /// `false` when there was no such user.
    pub fn remove_user(&self, name: &str) -> Result<bool> {
        let old = self
            .tree(TreeId::Users)
            .remove(name.as_bytes())
            .map_err(|e| IndexError::Write(e.to_string()))?;
        Ok(old.is_some())
    }

    /// Every user, in name order.
    pub fn users(&self) -> Result<Vec<(String, UserRecord)>> {
        self.tree(TreeId::Users)
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(IndexError::Read)?;
                Ok((
                    String::from_utf8_lossy(&key).into_owned(),
                    decode(TreeId::Users, &value)?,
                ))
            })
            .collect()
    }
}
