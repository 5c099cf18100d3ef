//! What the HTTP API's authentication keeps: the operator password's argon2 hash, API
//! keys (only the SHA-256 of their secret) and login sessions (only the SHA-256 of their
//! token). Writes go through the writer thread ([`Store::write`]); hashing and checking
//! happen in `crate::http::auth`, never here.

use rusqlite::OptionalExtension as _;
use serde::Serialize;

use super::{Store, StoreError};
use crate::model::UnixNanos;

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyScope {
    /// Every GET route except task input/output.
    Read,
    /// Everything, including task input/output and managing keys.
    Admin,
}

impl ApiKeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::Read => "read",
            ApiKeyScope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<ApiKeyScope> {
        match s {
            "read" => Some(ApiKeyScope::Read),
            "admin" => Some(ApiKeyScope::Admin),
            _ => None,
        }
    }
}

/// A named API key as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub name: String,
    /// The public start of the key (`tbm_<prefix>_…`), to recognise it.
    pub prefix: String,
    pub scope: ApiKeyScope,
    pub created_ns: UnixNanos,
    pub last_used_ns: Option<UnixNanos>,
    pub revoked_ns: Option<UnixNanos>,
}

/// An active key with the hash of its secret, for checking a presented key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredApiKey {
    pub info: ApiKeyInfo,
    pub secret_sha256: Vec<u8>,
}

/// A new key to store: the caller made the secret and hashed it.
#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub name: String,
    pub prefix: String,
    pub secret_sha256: Vec<u8>,
    pub scope: ApiKeyScope,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    pub csrf_token: String,
    pub created_ns: UnixNanos,
    pub expires_ns: UnixNanos,
}

const KEY_COLUMNS: &str =
    "id, name, prefix, scope, created_ns, last_used_ns, revoked_ns, secret_sha256";

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredApiKey> {
    Ok(StoredApiKey {
        info: ApiKeyInfo {
            id: row.get(0)?,
            name: row.get(1)?,
            prefix: row.get(2)?,
            scope: ApiKeyScope::parse(&row.get::<_, String>(3)?).unwrap_or(ApiKeyScope::Read),
            created_ns: row.get(4)?,
            last_used_ns: row.get(5)?,
            revoked_ns: row.get(6)?,
        },
        secret_sha256: row.get(7)?,
    })
}

impl Store {
    /// The stored password hash (PHC string), if a password was ever set.
    pub fn password_hash(&self) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT hash FROM auth_password WHERE id = 1")?
                .query_row([], |row| row.get(0))
                .optional()
        })
    }

    /// Stores `hash` unless a password is already set; returns whether it was stored.
    pub fn set_password_hash_if_absent(
        &self,
        hash: String,
        now_ns: UnixNanos,
    ) -> Result<bool, StoreError> {
        let path = self.path().to_owned();
        self.write(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO auth_password (id, hash, set_ns) VALUES (1, ?1, ?2)",
                (hash, now_ns),
            )
            .map(|n| n == 1)
            .map_err(|e| StoreError::query(&path, e))
        })
    }

    /// Replaces the password hash and ends every session.
    pub fn replace_password_hash(&self, hash: String, now_ns: UnixNanos) -> Result<(), StoreError> {
        let path = self.path().to_owned();
        self.write(move |tx| {
            let run = || -> rusqlite::Result<()> {
                tx.execute(
                    "INSERT INTO auth_password (id, hash, set_ns) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, set_ns = excluded.set_ns",
                    (hash, now_ns),
                )?;
                tx.execute("DELETE FROM sessions", [])?;
                Ok(())
            };
            run().map_err(|e| StoreError::query(&path, e))
        })
    }

    /// Stores a new key. `Ok(None)` when an active key already has that name.
    pub fn create_api_key(
        &self,
        key: NewApiKey,
        now_ns: UnixNanos,
    ) -> Result<Option<ApiKeyInfo>, StoreError> {
        let path = self.path().to_owned();
        self.write(move |tx| {
            let run = || -> rusqlite::Result<Option<ApiKeyInfo>> {
                let taken: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = ?1 AND revoked_ns IS NULL)",
                    [&key.name],
                    |row| row.get(0),
                )?;
                if taken {
                    return Ok(None);
                }
                tx.execute(
                    "INSERT INTO api_keys (name, prefix, secret_sha256, scope, created_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (
                        &key.name,
                        &key.prefix,
                        &key.secret_sha256,
                        key.scope.as_str(),
                        now_ns,
                    ),
                )?;
                Ok(Some(ApiKeyInfo {
                    id: tx.last_insert_rowid(),
                    name: key.name,
                    prefix: key.prefix,
                    scope: key.scope,
                    created_ns: now_ns,
                    last_used_ns: None,
                    revoked_ns: None,
                }))
            };
            run().map_err(|e| StoreError::query(&path, e))
        })
    }

    /// Every key, revoked ones too, oldest first.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))?;
            let rows = stmt.query_map([], |row| key_from_row(row).map(|k| k.info))?;
            rows.collect()
        })
    }

    /// The active (not revoked) key with this prefix.
    pub fn active_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?1 AND revoked_ns IS NULL"
            ))?
            .query_row([prefix], key_from_row)
            .optional()
        })
    }

    /// Revokes the active key with this id or name; returns it, or `None` if there is none.
    pub fn revoke_api_key(
        &self,
        id_or_name: KeyRef,
        now_ns: UnixNanos,
    ) -> Result<Option<ApiKeyInfo>, StoreError> {
        let path = self.path().to_owned();
        self.write(move |tx| {
            let run = || -> rusqlite::Result<Option<ApiKeyInfo>> {
                let found = match &id_or_name {
                    KeyRef::Id(id) => tx
                        .query_row(
                            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1 AND revoked_ns IS NULL"),
                            [id],
                            key_from_row,
                        )
                        .optional()?,
                    KeyRef::Name(name) => tx
                        .query_row(
                            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE name = ?1 AND revoked_ns IS NULL"),
                            [name],
                            key_from_row,
                        )
                        .optional()?,
                };
                let Some(key) = found else {
                    return Ok(None);
                };
                tx.execute(
                    "UPDATE api_keys SET revoked_ns = ?2 WHERE id = ?1",
                    (key.info.id, now_ns),
                )?;
                let mut info = key.info;
                info.revoked_ns = Some(now_ns);
                Ok(Some(info))
            };
            run().map_err(|e| StoreError::query(&path, e))
        })
    }

    /// Records that a key was used (callers throttle this).
    pub fn touch_api_key(&self, id: i64, now_ns: UnixNanos) -> Result<(), StoreError> {
        let path = self.path().to_owned();
        self.write(move |tx| {
            tx.execute(
                "UPDATE api_keys SET last_used_ns = ?2 WHERE id = ?1",
                (id, now_ns),
            )
            .map(drop)
            .map_err(|e| StoreError::query(&path, e))
        })
    }

    /// Stores a new session and deletes expired ones.
    pub fn create_session(
        &self,
        token_sha256: Vec<u8>,
        session: StoredSession,
        now_ns: UnixNanos,
    ) -> Result<(), StoreError> {
        let path = self.path().to_owned();
        self.write(move |tx| {
            let run = || -> rusqlite::Result<()> {
                tx.execute("DELETE FROM sessions WHERE expires_ns <= ?1", [now_ns])?;
                tx.execute(
                    "INSERT INTO sessions (token_sha256, csrf_token, created_ns, expires_ns)
                     VALUES (?1, ?2, ?3, ?4)",
                    (
                        token_sha256,
                        session.csrf_token,
                        session.created_ns,
                        session.expires_ns,
                    ),
                )?;
                Ok(())
            };
            run().map_err(|e| StoreError::query(&path, e))
        })
    }

    /// The session with this token hash, expired or not (the caller checks the time).
    pub fn session(&self, token_sha256: &[u8]) -> Result<Option<StoredSession>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT csrf_token, created_ns, expires_ns FROM sessions WHERE token_sha256 = ?1",
            )?
            .query_row([token_sha256], |row| {
                Ok(StoredSession {
                    csrf_token: row.get(0)?,
                    created_ns: row.get(1)?,
                    expires_ns: row.get(2)?,
                })
            })
            .optional()
        })
    }

    pub fn delete_session(&self, token_sha256: &[u8]) -> Result<(), StoreError> {
        let token_sha256 = token_sha256.to_vec();
        let path = self.path().to_owned();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM sessions WHERE token_sha256 = ?1",
                [token_sha256],
            )
            .map(drop)
            .map_err(|e| StoreError::query(&path, e))
        })
    }
}

/// A key named by its id or by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    Id(i64),
    Name(String),
}
