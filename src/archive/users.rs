//! Portal accounts kept in the index: names, argon2id password hashes and roles. The web layer
//! and the `mifas user` command call this; neither touches the index. Hashing and verifying
//! take tens of milliseconds of CPU each, so they run on the blocking pool.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::{Archive, OpenError, unix_now};
use crate::index::{Index, IndexError, UserRecord};
use crate::web::auth::Role;

/// Longest user name; names are 1..=64 of `[A-Za-z0-9._@-]`.
pub const MAX_NAME_LEN: usize = 64;
pub const MIN_PASSWORD_LEN: usize = 8;
/// Hashing cost grows with the input: a longer "password" is refused, not hashed.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user name {0:?}: 1 to 64 characters of A-Z a-z 0-9 . _ @ -")]
    InvalidName(String),
    #[error("the password must have {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    WeakPassword,
    #[error("user {0} already exists")]
    Exists(String),
    #[error("no user {0}")]
    NotFound(String),
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("stored record of user {0} is unreadable: {1}")]
    Corrupt(String, String),
}

impl UserError {
    /// Whether the caller's input was wrong (exit code 2 for the command line).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            UserError::InvalidName(_)
                | UserError::WeakPassword
                | UserError::Exists(_)
                | UserError::NotFound(_)
        )
    }
}

pub fn validate_name(name: &str) -> Result<(), UserError> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(UserError::InvalidName(name.chars().take(80).collect()))
    }
}

pub fn validate_password(password: &str) -> Result<(), UserError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        Err(UserError::WeakPassword)
    } else {
        Ok(())
    }
}

/// One account as listed (no hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created: u64,
}

/// The accounts of one index: through a running [`Archive`] ([`Archive::users`]) or, with the
/// server stopped, over the index alone ([`Users::open`]).
#[derive(Debug, Clone)]
pub struct Users {
    index: Arc<Index>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UserError> + Send + 'static,
) -> Result<T, UserError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UserError::Hash(format!("task failed: {e}")))?
}

fn hash(password: &str) -> Result<String, UserError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// A hash no password matches in practice: unknown names are checked against it so that they
/// take as long as known ones (no user enumeration by timing).
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 32] = rand::random();
        hash(&hex::encode(secret)).unwrap_or_default()
    })
}

fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

fn role_of(name: &str, record: &UserRecord) -> Result<Role, UserError> {
    record
        .role
        .parse()
        .map_err(|e: String| UserError::Corrupt(name.to_string(), e))
}

impl Users {
    /// The accounts of the data directory with the server stopped: opens only the index (no
    /// sites, no reconciliation). Fails with [`OpenError::Index`] while a server holds it.
    pub fn open(data_dir: &Path) -> Result<Users, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let index_dir = data_dir.join("index");
        let index = Index::open(&index_dir).map_err(|e| OpenError::Index(index_dir, e))?;
        Ok(Users {
            index: Arc::new(index),
        })
    }

    async fn flush(&self) -> Result<(), UserError> {
        Ok(self.index.flush().await?)
    }

    pub async fn add_user(&self, name: &str, password: &str, role: Role) -> Result<(), UserError> {
        validate_name(name)?;
        validate_password(password)?;
        let (index, name, password) = (self.index.clone(), name.to_string(), password.to_string());
        blocking(move || {
            if index.user(&name)?.is_some() {
                return Err(UserError::Exists(name));
            }
            let record = UserRecord {
                phc: hash(&password)?,
                role: role.as_str().to_string(),
                created: unix_now(),
            };
            if index.insert_user(&name, &record)? {
                Ok(())
            } else {
                Err(UserError::Exists(name))
            }
        })
        .await?;
        self.flush().await
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        validate_name(name)?;
        validate_password(password)?;
        let (index, name, password) = (self.index.clone(), name.to_string(), password.to_string());
        blocking(move || {
            let phc = hash(&password)?;
            if index.update_user(&name, |r| r.phc = phc.clone())? {
                Ok(())
            } else {
                Err(UserError::NotFound(name))
            }
        })
        .await?;
        self.flush().await
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), UserError> {
        validate_name(name)?;
        if !self.index.remove_user(name)? {
            return Err(UserError::NotFound(name.to_string()));
        }
        self.flush().await
    }

    /// The user's role when `password` is theirs; `None` for a wrong password or an unknown
    /// (or malformed) name.
    pub async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Role>, UserError> {
        let (index, name, password) = (self.index.clone(), name.to_string(), password.to_string());
        blocking(move || {
            let record = if validate_name(&name).is_ok() && password.len() <= MAX_PASSWORD_LEN {
                index.user(&name)?
            } else {
                None
            };
            match record {
                Some(record) => {
                    let role = role_of(&name, &record)?;
                    Ok(verify(&record.phc, &password).then_some(role))
                }
                None => {
                    let _ = verify(decoy_hash(), &password);
                    Ok(None)
                }
            }
        })
        .await
    }

    /// The role of an existing user (sessions re-check it), `None` when removed.
    pub async fn role(&self, name: &str) -> Result<Option<Role>, UserError> {
        let (index, name) = (self.index.clone(), name.to_string());
        blocking(move || match index.user(&name)? {
            Some(record) => role_of(&name, &record).map(Some),
            None => Ok(None),
        })
        .await
    }

    pub async fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        let index = self.index.clone();
        blocking(move || {
            index
                .users()?
                .into_iter()
                .map(|(name, record)| {
                    Ok(UserInfo {
                        role: role_of(&name, &record)?,
                        created: record.created,
                        name,
                    })
                })
                .collect()
        })
        .await
    }
}

impl Archive {
    /// The portal accounts kept in this archive's index.
    pub fn users(&self) -> Users {
        Users {
            index: self.inner.index.clone(),
        }
    }

    pub async fn add_user(&self, name: &str, password: &str, role: Role) -> Result<(), UserError> {
        self.users().add_user(name, password, role).await
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        self.users().set_password(name, password).await
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), UserError> {
        self.users().remove_user(name).await
    }

    pub async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Role>, UserError> {
        self.users().verify_password(name, password).await
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>, UserError> {
        self.users().list().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords() {
        for good in ["a", "alice", "dr.wu@ward-3_b", &"x".repeat(64)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "ali/ce", "..%2f", "名前", &"x".repeat(65), "a\n"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(
            validate_password("ééééééé").is_err(),
            "counted in characters"
        );
        assert!(validate_password(&"p".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }

    #[tokio::test]
    async fn add_verify_change_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = Users::open(dir.path()).expect("open");
        users
            .add_user("alice", "correct horse", Role::Uploader)
            .await
            .expect("add");
        assert!(matches!(
            users.add_user("alice", "another one", Role::Viewer).await,
            Err(UserError::Exists(_))
        ));
        assert_eq!(
            users
                .verify_password("alice", "correct horse")
                .await
                .expect("verify"),
            Some(Role::Uploader)
        );
        assert_eq!(
            users
                .verify_password("alice", "wrong pass")
                .await
                .expect("v"),
            None
        );
        assert_eq!(
            users
                .verify_password("bob", "correct horse")
                .await
                .expect("v"),
            None
        );
        let phc = users.index.user("alice").expect("read").expect("some").phc;
        assert!(phc.starts_with("$argon2id$"), "{phc}");

        users
            .set_password("alice", "battery staple")
            .await
            .expect("passwd");
        assert_eq!(
            users
                .verify_password("alice", "correct horse")
                .await
                .expect("v"),
            None
        );
        assert_eq!(
            users
                .verify_password("alice", "battery staple")
                .await
                .expect("v"),
            Some(Role::Uploader)
        );
        assert!(matches!(
            users.set_password("bob", "battery staple").await,
            Err(UserError::NotFound(_))
        ));
        let list = users.list().await.expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].name.as_str(), list[0].role),
            ("alice", Role::Uploader)
        );

        users.remove_user("alice").await.expect("remove");
        assert_eq!(
            users
                .verify_password("alice", "battery staple")
                .await
                .expect("v"),
            None
        );
        assert!(matches!(
            users.remove_user("alice").await,
            Err(UserError::NotFound(_))
        ));
        drop(users);
        // Kept on disk: a reopen sees the same (empty) set.
        let users = Users::open(dir.path()).expect("reopen");
        assert!(users.list().await.expect("list").is_empty());
    }
}
