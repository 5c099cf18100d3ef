//! The store's error type. Every message is one line that says what happened and what to do.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store configuration: {detail}")]
    InvalidConfig { detail: String },

    #[error(
        "cannot open database {}: its directory does not exist; create it or point DB_PATH elsewhere",
        path.display()
    )]
    MissingDirectory { path: PathBuf },

    #[error("cannot open database {}: {source}; check the path and its permissions", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "database {} is not a SQLite database or is corrupt ({detail}); restore it from a backup or move it away to start fresh",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "cannot write database {}: it or its directory is read-only for this user; give the monitor's user write access to both, or choose another DB_PATH",
        path.display()
    )]
    ReadOnly { path: PathBuf },

    #[error(
        "database {} is locked by another process; stop the other program using it or choose another DB_PATH",
        path.display()
    )]
    Locked { path: PathBuf },

    #[error(
        "disk full while writing {}; free space: ingest resumes automatically, nothing is lost",
        path.display()
    )]
    DiskFull { path: PathBuf },

    #[error(
        "database {} has schema version {found}, newer than this monitor supports ({supported}); upgrade the monitor",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error(
        "database migration {version} ({name}) failed: {source}; restore the database from a backup or move it away"
    )]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    #[error("database query failed: {source}")]
    Query {
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "{batches} batches could not be committed before shutdown ({detail}); their sources resume from the last committed cursor on the next start"
    )]
    Uncommitted { batches: usize, detail: String },

    #[error("cannot start the store writer thread: {source}; check the process limits")]
    WriterThread {
        #[source]
        source: std::io::Error,
    },

    #[error("a store call on the blocking pool failed: {detail}")]
    Blocking { detail: String },

    #[error("the store is closed (the monitor is shutting down)")]
    Closed,
}

impl StoreError {
    /// Maps an error met while opening or migrating the database at `path`.
    pub(crate) fn at_open(path: &Path, source: rusqlite::Error) -> StoreError {
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path: path.to_owned(),
                detail: one_line(&source.to_string()),
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
                path: path.to_owned(),
            },
            Some(ErrorCode::DiskFull) => StoreError::DiskFull {
                path: path.to_owned(),
            },
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly {
                path: path.to_owned(),
            },
            _ => StoreError::Open {
                path: path.to_owned(),
                source,
            },
        }
    }

    /// Maps an error met by a read query.
    pub(crate) fn query(path: &Path, source: rusqlite::Error) -> StoreError {
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path: path.to_owned(),
                detail: one_line(&source.to_string()),
            },
            _ => StoreError::Query { source },
        }
    }

    /// Describes a failed write transaction for the health report and the log (one line).
    pub(crate) fn describe_write(path: &Path, source: &rusqlite::Error) -> String {
        match source.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::DiskFull {
                path: path.to_owned(),
            }
            .to_string(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
                path: path.to_owned(),
            }
            .to_string(),
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly {
                path: path.to_owned(),
            }
            .to_string(),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path: path.to_owned(),
                detail: one_line(&source.to_string()),
            }
            .to_string(),
            _ => format!(
                "write to database {} failed ({}); retrying, nothing is lost",
                path.display(),
                one_line(&source.to_string())
            ),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
