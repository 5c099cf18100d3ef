//! The `password` and `api-key` subcommands: operator actions on the database, run while
//! the monitor runs or not (SQLite lets the two take turns).

use std::io::BufRead as _;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use truebit_web::format::iso;

use super::auth::{generate_password, hash_password};
use crate::app;
use crate::config::Config;
use crate::store::auth::{ApiKeyScope, KeyRef};
use crate::store::{now_ns, Store};

#[derive(Subcommand, Debug)]
pub enum PasswordCommand {
    /// Set a new operator password (generated and printed once, or read from standard
    /// input with --stdin) and log out every session.
    Reset {
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a named key; it is printed once, only its hash is stored.
    Create {
        /// A name to recognise the key by (letters, digits, space - _ .).
        name: String,
        /// read: every GET route but task input/output; admin: everything.
        #[arg(long, default_value = "read", value_parser = ["read", "admin"])]
        scope: String,
    },
    /// List the named keys (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its id or name.
    Revoke {
        /// The key's id (from `list`) or name.
        key: String,
    },
}

fn open(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(app::store_config(config))?)
}

pub fn password(command: PasswordCommand, config: &Config) -> anyhow::Result<()> {
    let PasswordCommand::Reset { stdin } = command;
    let (password, generated) = if stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.chars().count() < super::auth::MIN_PASSWORD_CHARS {
            bail!(
                "the password must be at least {} characters",
                super::auth::MIN_PASSWORD_CHARS
            );
        }
        (line, false)
    } else {
        (generate_password(), true)
    };
    let hash =
        hash_password(&password).map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    let store = open(config)?;
    store.replace_password_hash(hash, now_ns())?;
    store.close()?;
    if generated {
        println!("new operator password: {password}");
        println!("(shown once; only its hash is stored; every session was logged out)");
    } else {
        println!("operator password set; every session was logged out");
    }
    if config.http.task_data_password.is_some() {
        eprintln!(
            "note: TASK_DATA_PASSWORD is set and is the password while it is; the stored one applies once it is unset"
        );
    }
    Ok(())
}

pub fn api_key(command: ApiKeyCommand, config: &Config) -> anyhow::Result<()> {
    let store = open(config)?;
    let result = run_api_key(command, &store);
    store.close()?;
    result
}

fn run_api_key(command: ApiKeyCommand, store: &Store) -> anyhow::Result<()> {
    match command {
        ApiKeyCommand::Create { name, scope } => {
            let scope = ApiKeyScope::parse(&scope).unwrap_or(ApiKeyScope::Read);
            let (key, new) = super::api::keys::new_named_key(name.clone(), scope)?;
            let Some(info) = store.create_api_key(new, now_ns())? else {
                return Err(super::api::keys::key_name_taken(&name).into());
            };
            println!("{key}");
            eprintln!(
                "created API key {} ({:?}, scope {}); it is shown once: use it as `Authorization: Bearer <key>`",
                info.id,
                info.name,
                info.scope.as_str()
            );
        }
        ApiKeyCommand::List { json } => {
            let keys = store.api_keys()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("no API keys (create one with `truebit-monitor api-key create NAME`)");
            } else {
                println!(
                    "{:>4}  {:<24} {:<6} {:<14} {:<25} state",
                    "id", "name", "scope", "prefix", "last used"
                );
                for k in keys {
                    println!(
                        "{:>4}  {:<24} {:<6} tbm_{:<10} {:<25} {}",
                        k.id,
                        k.name,
                        k.scope.as_str(),
                        k.prefix,
                        k.last_used_ns.map_or("never".into(), iso),
                        k.revoked_ns
                            .map_or("active".into(), |t| format!("revoked {}", iso(t)))
                    );
                }
            }
        }
        ApiKeyCommand::Revoke { key } => {
            let by = match key.parse::<i64>() {
                Ok(id) => KeyRef::Id(id),
                Err(_) => KeyRef::Name(key.clone()),
            };
            match store.revoke_api_key(by, now_ns())? {
                Some(info) => println!("revoked API key {} ({:?})", info.id, info.name),
                None => bail!("no active API key {key:?}; see `truebit-monitor api-key list`"),
            }
        }
    }
    Ok(())
}
