//! Who is asking: a login session (cookie) or an API key (`Authorization: Bearer`).
//!
//! - The operator password is `TASK_DATA_PASSWORD`, or one generated on first start whose
//!   argon2id hash is stored. Logging in sets a session cookie (HttpOnly, SameSite=Strict,
//!   Secure behind HTTPS) that expires after `SESSION_TTL`.
//! - API keys: `API_KEY` (full access) and named keys `tbm_<prefix>_<secret>` stored as
//!   SHA-256 (keys are 256-bit random). Every comparison is constant-time.
//! - Failed logins and bad keys count against the client IP ([`FailureLimiter`]); an
//!   attempt is counted before it is judged and given back when it succeeds, so concurrent
//!   guesses cannot pass the limit. Password checks run one at a time per address, on
//!   [`ARGON2_THREADS`] threads with a queue of [`ARGON2_QUEUE`]; beyond, `503 busy`.
//!   A blocked address is refused password logins, `API_KEY` and bad keys; a valid named
//!   key (256-bit random) and a session still pass.
//! - CSRF: requests that change something with a cookie must carry the session's CSRF
//!   token (`X-CSRF-Token` header or `csrf_token` form field) and, when the browser sends
//!   one, a same-site `Origin`; the login form checks `Origin` too.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore as _;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::config::HttpConfig;
use super::error::ApiError;
use super::ratelimit::{client_ip, FailureLimiter, Reservation};
use super::AppState;
use crate::model::UnixNanos;
use crate::store::auth::{ApiKeyScope, StoredSession};
use crate::store::{Store, StoreError};

pub const SESSION_COOKIE: &str = "tbm_session";
/// The cookie name behind HTTPS: the `__Host-` prefix pins it to this host and path `/`.
pub const SECURE_SESSION_COOKIE: &str = "__Host-tbm_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest operator password accepted (configuration, `password reset`, dashboard).
pub const MIN_PASSWORD_CHARS: usize = 8;
const KEY_PREFIX: &str = "tbm_";
/// `last_used` of a key is written at most this often.
const TOUCH_EVERY_NS: i64 = 60 * 1_000_000_000;
/// Threads of their own that check passwords against the stored argon2id hash (~19 MiB
/// and tens of ms each): at most this many checks run at once, whatever the load.
pub const ARGON2_THREADS: usize = 2;
/// Password checks waiting for a thread at most; beyond, a login is refused at once
/// (`503 busy`) instead of queueing memory and time.
pub const ARGON2_QUEUE: usize = 8;

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Logged in with the password.
    Session {
        token_sha256: Vec<u8>,
        csrf_token: String,
        expires_ns: UnixNanos,
    },
    /// The `API_KEY` of the configuration.
    ConfigKey,
    /// A named key.
    Key {
        id: i64,
        name: String,
        scope: ApiKeyScope,
    },
}

impl Principal {
    /// Sessions (the password) and admin keys may change things and see task data.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Session { .. } | Principal::ConfigKey => true,
            Principal::Key { scope, .. } => *scope == ApiKeyScope::Admin,
        }
    }
}

/// Authentication state shared by all requests.
#[derive(Debug)]
pub struct AuthState {
    config_key_sha256: Option<[u8; 32]>,
    config_password_sha256: Option<[u8; 32]>,
    pub limiter: FailureLimiter,
    argon2: OnceLock<PasswordChecker>,
    /// Addresses with a password check under way: one at a time per address.
    checking: Arc<Mutex<HashSet<IpAddr>>>,
    touched: Mutex<HashMap<i64, UnixNanos>>,
    /// Failed logins and bad keys since start (for /metrics).
    pub failures: AtomicU64,
}

impl AuthState {
    pub fn new(config: &HttpConfig) -> AuthState {
        AuthState {
            config_key_sha256: config
                .api_key
                .as_ref()
                .map(|k| sha256(k.expose_secret().as_bytes())),
            config_password_sha256: config
                .task_data_password
                .as_ref()
                .map(|p| sha256(p.expose_secret().as_bytes())),
            limiter: FailureLimiter::default(),
            argon2: OnceLock::new(),
            checking: Arc::new(Mutex::new(HashSet::new())),
            touched: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
        }
    }
}

/// A password to check against a PHC hash, and where to send the answer.
struct CheckJob {
    password: String,
    phc: String,
    reply: oneshot::Sender<bool>,
}

/// [`ARGON2_THREADS`] threads that check passwords, fed by a queue of [`ARGON2_QUEUE`].
/// Threads of their own (not the blocking pool) keep argon2's memory to a fixed number
/// of allocator arenas; they end when the [`AuthState`] is dropped.
#[derive(Debug)]
struct PasswordChecker {
    jobs: SyncSender<CheckJob>,
}

impl PasswordChecker {
    fn start() -> PasswordChecker {
        let (jobs, rx) = mpsc::sync_channel::<CheckJob>(ARGON2_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..ARGON2_THREADS {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("password-check-{n}"))
                .spawn(move || check_passwords(&rx));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password check thread");
            }
        }
        PasswordChecker { jobs }
    }

    /// Queues a check; `Busy` at once when the queue is full.
    async fn check(&self, password: String, phc: String) -> Result<bool, ApiError> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(CheckJob {
            password,
            phc,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::LoginBusy),
            Err(TrySendError::Disconnected(_)) => return Err(ApiError::Unavailable),
        }
        answer.await.map_err(|_| ApiError::Internal {
            cause: "a password check thread ended".into(),
        })
    }
}

/// An address's one password check under way; the place is freed when it is dropped.
struct CheckingAddress {
    set: Arc<Mutex<HashSet<IpAddr>>>,
    ip: IpAddr,
}

impl CheckingAddress {
    /// `LoginBusy` when a check from `ip` is under way already.
    fn take(set: &Arc<Mutex<HashSet<IpAddr>>>, ip: IpAddr) -> Result<CheckingAddress, ApiError> {
        let mut checking = set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !checking.insert(ip) {
            return Err(ApiError::LoginBusy);
        }
        Ok(CheckingAddress {
            set: Arc::clone(set),
            ip,
        })
    }
}

impl Drop for CheckingAddress {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.ip);
    }
}

fn check_passwords(rx: &Mutex<Receiver<CheckJob>>) {
    // argon2's working memory (~19 MiB), allocated once per thread and reused: checks
    // cost no allocation, and the process keeps two such blocks, not one per burst.
    let mut memory: Vec<argon2::Block> = Vec::new();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            rx.recv()
        };
        let Ok(job) = job else { return };
        if job.reply.is_closed() {
            continue; // the client went away while it waited
        }
        let ok = verify_with_memory(&job.password, &job.phc, &mut memory);
        let _ = job.reply.send(ok);
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new named key: `(the key to show once, its public prefix, the SHA-256 to store)`.
pub fn new_api_key() -> (String, String, [u8; 32]) {
    let prefix = random_hex(4);
    let key = format!("{KEY_PREFIX}{prefix}_{}", random_hex(32));
    let hash = sha256(key.as_bytes());
    (key, prefix, hash)
}

/// The public prefix of a key in the named-key format.
fn key_prefix(token: &str) -> Option<&str> {
    let (prefix, secret) = token.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    (prefix.len() == 8 && secret.len() == 64 && hex(prefix) && hex(secret)).then_some(prefix)
}

/// A password that is easy to type: 20 characters from an alphabet without look-alikes
/// (about 110 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| {
            let i = (rng.next_u32() as usize) % ALPHABET.len();
            char::from(ALPHABET[i])
        })
        .collect()
}

/// The argon2id hash of `password` (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the argon2 PHC string `phc`, with argon2's working memory
/// in `memory` (grown once, then reused).
fn verify_with_memory(password: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        argon2::Params::try_from(&hash),
        argon2::Algorithm::try_from(hash.algorithm),
    ) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
        None => argon2::Version::default(),
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0_u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), argon2::Block::default());
    }
    let blocks = params.block_count();
    let mut out = vec![0_u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            memory.get_mut(..blocks).unwrap_or_default(),
        )
        .is_ok()
        && ct_eq(&out, expected.as_bytes())
}

/// On first start without `TASK_DATA_PASSWORD`, generates the operator password and
/// stores its hash. Returns the new password, to be printed once.
pub fn ensure_password(store: &Store, config: &HttpConfig) -> Result<Option<String>, StoreError> {
    if config.task_data_password.is_some() || store.password_hash()?.is_some() {
        return Ok(None);
    }
    let password = generate_password();
    let hash = hash_password(&password).map_err(|detail| StoreError::Blocking { detail })?;
    let stored = store.set_password_hash_if_absent(hash, crate::store::now_ns())?;
    Ok(stored.then_some(password))
}

impl AppState {
    fn cookie_name(&self) -> &'static str {
        if self.config.https {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    /// The client's IP, as far as the configured proxies let us know it.
    pub fn client_ip(
        &self,
        request_extensions: &axum::http::Extensions,
        headers: &HeaderMap,
    ) -> IpAddr {
        let peer = request_extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        client_ip(peer, headers, &self.config.trusted_proxies)
    }

    /// Takes an attempt for `ip` before a password or key is judged ([`FailureLimiter`]).
    pub(crate) fn reserve(&self, ip: IpAddr, now: UnixNanos) -> Result<Reservation, ApiError> {
        self.auth
            .limiter
            .reserve(ip, now)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })
    }

    /// Settles a reserved attempt: given back when it succeeded, counted when not.
    pub(crate) fn settle(&self, attempt: Reservation, ok: bool) {
        if ok {
            self.auth.limiter.succeeded(attempt);
        } else {
            self.auth.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks the operator password as one attempt of the address `ip`.
    pub(crate) async fn check_password_from(
        &self,
        ip: IpAddr,
        password: String,
    ) -> Result<bool, ApiError> {
        let _one = CheckingAddress::take(&self.auth.checking, ip)?;
        let attempt = self.reserve(ip, self.clock.now_ns())?;
        let ok = self.check_password(password).await;
        self.settle(attempt, matches!(ok, Ok(true)));
        ok
    }

    /// Authenticates a request by its `Authorization` header or its session cookie.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
    ) -> Result<Principal, ApiError> {
        let now = self.clock.now_ns();
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim);
            // A valid named key passes even from a blocked address: it is 256-bit random,
            // so the lockout protects nothing there, and a misbehaving client next to it
            // must not cut it off. Misses count like failed logins.
            if let Some(token) = token {
                if let Some(principal) = self.check_named_key(token, now).await? {
                    return Ok(principal);
                }
            }
            // `API_KEY` is chosen by the operator (16 characters at least): it stays
            // behind the lockout, like the password.
            let attempt = self.reserve(ip, now)?;
            let ok = token.is_some_and(|t| self.is_config_key(t));
            self.settle(attempt, ok);
            return if ok {
                Ok(Principal::ConfigKey)
            } else {
                Err(ApiError::BadCredentials)
            };
        }
        if let Some(token) = cookie(headers, self.cookie_name()) {
            let token_sha256 = sha256(token.as_bytes()).to_vec();
            if let Some(session) = self
                .store
                .call({
                    let t = token_sha256.clone();
                    move |st| st.session(&t)
                })
                .await?
            {
                if session.expires_ns > now {
                    return Ok(Principal::Session {
                        token_sha256,
                        csrf_token: session.csrf_token,
                        expires_ns: session.expires_ns,
                    });
                }
            }
        }
        Err(ApiError::Unauthorized)
    }

    /// Whether `token` is the configuration's `API_KEY`.
    fn is_config_key(&self, token: &str) -> bool {
        self.auth
            .config_key_sha256
            .as_ref()
            .is_some_and(|expected| ct_eq(&sha256(token.as_bytes()), expected))
    }

    /// The named key `token` is, if it is an active one.
    async fn check_named_key(
        &self,
        token: &str,
        now: UnixNanos,
    ) -> Result<Option<Principal>, ApiError> {
        let Some(prefix) = key_prefix(token) else {
            return Ok(None);
        };
        let Some(key) = self
            .store
            .call({
                let prefix = prefix.to_owned();
                move |st| st.active_api_key(&prefix)
            })
            .await?
        else {
            return Ok(None);
        };
        if !ct_eq(&sha256(token.as_bytes()), &key.secret_sha256) {
            return Ok(None);
        }
        self.touch_key(key.info.id, now);
        Ok(Some(Principal::Key {
            id: key.info.id,
            name: key.info.name,
            scope: key.info.scope,
        }))
    }

    /// Records the key's last use, at most once a minute, without making the request wait.
    fn touch_key(&self, id: i64, now: UnixNanos) {
        {
            let mut touched = self
                .auth
                .touched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if touched
                .get(&id)
                .is_some_and(|last| now - last < TOUCH_EVERY_NS)
            {
                return;
            }
            touched.insert(id, now);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.call(move |st| st.touch_api_key(id, now)).await {
                tracing::debug!(%error, "cannot record an API key's last use");
            }
        });
    }

    /// Whether `password` is the operator password.
    pub(crate) async fn check_password(&self, password: String) -> Result<bool, ApiError> {
        if let Some(expected) = &self.auth.config_password_sha256 {
            return Ok(ct_eq(&sha256(password.as_bytes()), expected));
        }
        let Some(phc) = self.store.call(|st| st.password_hash()).await? else {
            return Ok(false);
        };
        self.auth
            .argon2
            .get_or_init(PasswordChecker::start)
            .check(password, phc)
            .await
    }

    /// Refuses a browser request sent from another site (`Sec-Fetch-Site`, `Origin`).
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        // Browsers set `Sec-Fetch-Site` themselves (scripts cannot); when present it
        // decides. Form posts may carry `Origin: null` (the referrer policy), so the
        // Origin header is only the fallback for browsers without it.
        if let Some(site) = headers.get("sec-fetch-site") {
            return if matches!(site.to_str(), Ok("same-origin" | "none")) {
                Ok(())
            } else {
                Err(ApiError::Csrf {
                    reason: "the request came from another site",
                })
            };
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("null");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same_host = !host.is_empty()
            && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        let public = self
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.split('/').take(3).collect::<Vec<_>>().join("/") == origin);
        let allowed = self.config.allowed_origins.iter().any(|o| o == origin);
        if same_host || public || allowed {
            Ok(())
        } else {
            Err(ApiError::Csrf {
                reason: "the Origin header is not this monitor",
            })
        }
    }

    pub(crate) fn session_cookie(&self, token: &str, max_age_secs: u64) -> HeaderValue {
        let secure = if self.config.https { "; Secure" } else { "" };
        let value = format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}",
            self.cookie_name()
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware for every `/api` route: authenticates, refuses changes without admin rights
/// and cookie requests without the CSRF token, and hands the [`Principal`] to the handler.
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = state.client_ip(req.extensions(), req.headers());
    let principal = match state.authenticate(req.headers(), ip).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if is_unsafe(req.method()) {
        if !principal.is_admin() {
            return ApiError::Forbidden {
                reason: "this key is read-only; changes need the password or an admin key",
            }
            .into_response();
        }
        if let Principal::Session { csrf_token, .. } = &principal {
            if let Err(e) = state.check_origin(req.headers()) {
                return e.into_response();
            }
            let sent = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !ct_eq(sent.as_bytes(), csrf_token.as_bytes()) {
                return ApiError::Csrf {
                    reason: "send the session's CSRF token in the X-CSRF-Token header",
                }
                .into_response();
            }
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The login body (JSON or form), for `/auth/login` and the login page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginForm {
    pub password: String,
    /// Where a form login redirects to (a path on this monitor).
    #[serde(default)]
    pub next: Option<String>,
    /// The hidden user name field password managers look for; there is one operator.
    #[serde(default, rename = "username")]
    _username: Option<String>,
}

/// A local path to return to after logging in (never another site), else `/`.
///
/// Only a path on this origin passes: it starts with one `/`, is printable ASCII (a
/// browser drops tabs and newlines from a `Location`, so `/\t/evil` would become
/// `//evil`; a header cannot carry them anyway), has no backslash, and its
/// percent-decoded form has no control character, backslash or `//` start either.
pub(crate) fn safe_next(next: Option<String>) -> String {
    next.filter(|n| is_local_path(n))
        .unwrap_or_else(|| "/".into())
}

fn is_local_path(n: &str) -> bool {
    let shape = |p: &[u8]| {
        p.first() == Some(&b'/') && !matches!(p.get(1), Some(b'/' | b'\\')) && !p.contains(&b'\\')
    };
    let decoded = percent_decode(n.as_bytes());
    n.len() <= 2000
        && n.bytes().all(|b| b.is_ascii_graphic())
        && shape(n.as_bytes())
        && shape(&decoded)
        && !String::from_utf8_lossy(&decoded)
            .chars()
            .any(char::is_control)
}

/// `%XX` sequences decoded once (others left as they are).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(0));
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutForm {
    #[serde(default)]
    csrf_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LoginResponse {
    pub csrf_token: String,
    pub expires_ns: UnixNanos,
}

/// How a body was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

pub fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next()?.trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Some(BodyKind::Json),
        "application/x-www-form-urlencoded" => Some(BodyKind::Form),
        _ => None,
    }
}

/// Decodes a JSON or form body into `T`.
pub fn decode_body<T: serde::de::DeserializeOwned>(
    kind: BodyKind,
    body: &[u8],
) -> Result<T, ApiError> {
    match kind {
        BodyKind::Json => serde_json::from_slice(body).map_err(|e| ApiError::BadBody {
            message: e.to_string(),
        }),
        BodyKind::Form => serde_urlencoded::from_bytes(body).map_err(|e| ApiError::BadBody {
            message: e.to_string(),
        }),
    }
}

impl AppState {
    /// Checks the operator password (rate-limited per address) and opens a session:
    /// the cookie to set, the session's CSRF token and when it expires.
    pub(crate) async fn open_session(
        &self,
        ip: IpAddr,
        password: String,
    ) -> Result<(HeaderValue, String, UnixNanos), ApiError> {
        if !self.check_password_from(ip, password).await? {
            return Err(ApiError::BadCredentials);
        }
        let now = self.clock.now_ns();
        let token = random_hex(32);
        let csrf_token = random_hex(16);
        let ttl = self.config.session_ttl;
        let expires_ns = now.saturating_add(i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX));
        let token_sha256 = sha256(token.as_bytes()).to_vec();
        let session = StoredSession {
            csrf_token: csrf_token.clone(),
            created_ns: now,
            expires_ns,
        };
        self.store
            .call(move |st| st.create_session(token_sha256, session, now))
            .await?;
        let cookie = self.session_cookie(&token, ttl.as_secs());
        Ok((cookie, csrf_token, expires_ns))
    }

    /// Whether the operator password comes from the configuration (it cannot be changed
    /// from the dashboard then).
    pub(crate) fn password_from_config(&self) -> bool {
        self.auth.config_password_sha256.is_some()
    }
}

/// `POST /auth/login`: the password, as JSON `{"password": …}` or a form field.
pub async fn login(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let ip = state.client_ip(req.extensions(), req.headers());
    state.check_origin(req.headers())?;
    let kind = body_kind(req.headers()).ok_or(ApiError::UnsupportedMediaType {
        expected: "application/json or application/x-www-form-urlencoded",
    })?;
    let body = super::read_body(req).await?;
    let form: LoginForm = decode_body(kind, &body)?;
    let (cookie, csrf_token, expires_ns) = state.open_session(ip, form.password).await?;
    let mut response = match kind {
        BodyKind::Json => Json(LoginResponse {
            csrf_token,
            expires_ns,
        })
        .into_response(),
        BodyKind::Form => redirect(&safe_next(form.next)),
    };
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /auth/logout`: ends the session of the cookie; needs its CSRF token.
pub async fn logout(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    state.check_origin(req.headers())?;
    let ip = state.client_ip(req.extensions(), req.headers());
    let headers = req.headers().clone();
    let principal = state.authenticate(&headers, ip).await?;
    let Principal::Session {
        token_sha256,
        csrf_token,
        ..
    } = principal
    else {
        return Err(ApiError::Forbidden {
            reason: "only a login session can log out; API keys are revoked instead",
        });
    };
    let kind = body_kind(&headers);
    let body = super::read_body(req).await?;
    let from_form = match kind {
        Some(kind) if !body.is_empty() => decode_body::<LogoutForm>(kind, &body)?.csrf_token,
        _ => None,
    };
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(from_form)
        .unwrap_or_default();
    if !ct_eq(sent.as_bytes(), csrf_token.as_bytes()) {
        return Err(ApiError::Csrf {
            reason: "send the session's CSRF token (X-CSRF-Token header or csrf_token field)",
        });
    }
    state
        .store
        .call(move |st| st.delete_session(&token_sha256))
        .await?;
    let mut response = match kind {
        Some(BodyKind::Form) => redirect("/"),
        _ => StatusCode::NO_CONTENT.into_response(),
    };
    response
        .headers_mut()
        .insert(header::SET_COOKIE, state.session_cookie("", 0));
    Ok(response)
}

/// A `303 See Other` to `to` (to `/` when `to` cannot be a header value: a redirect
/// always has a `Location`).
pub(crate) fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let location = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/"));
    response.headers_mut().insert(header::LOCATION, location);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_keys_have_a_recognisable_prefix() {
        let (key, prefix, hash) = new_api_key();
        assert_eq!(key_prefix(&key), Some(prefix.as_str()));
        assert_eq!(hash, sha256(key.as_bytes()));
        assert_eq!(key_prefix("tbm_zzzz_abc"), None);
        assert_eq!(key_prefix("some-other-token"), None);
    }

    fn verify_password_hash(password: &str, phc: &str) -> bool {
        verify_with_memory(password, phc, &mut Vec::new())
    }

    #[test]
    fn password_hashes_verify_only_the_password() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password_hash("correct horse", &hash));
        assert!(!verify_password_hash("correct horsf", &hash));
        assert!(!verify_password_hash("correct horse", "not a hash"));
    }

    #[test]
    fn the_reused_memory_check_agrees_with_argon2() {
        let hash = hash_password("correct horse").expect("hash");
        let mut memory = Vec::new();
        for _ in 0..2 {
            assert!(verify_with_memory("correct horse", &hash, &mut memory));
            assert!(!verify_with_memory("correct horsf", &hash, &mut memory));
        }
        assert!(!verify_with_memory(
            "correct horse",
            "not a hash",
            &mut memory
        ));
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }

    #[test]
    fn only_a_path_on_this_origin_is_a_place_to_return_to() {
        let bad = [
            "/\t/other.host/",
            "/\n/other.host/",
            "/\r\n/other.host/",
            "/%09/other.host/",
            "/%0A/other.host/",
            "/%0d%0aSet-Cookie:x=1",
            "//other.host/",
            "/\\other.host/",
            "\\\\other.host",
            "/%2F/other.host/",
            "/%5Cother.host/",
            "/%5C/other.host/",
            "https://other.host/",
            "http:/other.host",
            "other.host",
            "javascript:alert(1)",
            "/ /other.host",
            "/\u{0}x",
            "/%00",
            "/\u{202e}x",
            "/tasks\u{85}",
            "",
        ];
        for n in bad {
            assert_eq!(safe_next(Some(n.to_owned())), "/", "{n:?}");
        }
        assert_eq!(safe_next(Some("/".repeat(2001))), "/");
        assert_eq!(safe_next(None), "/");
        for n in [
            "/",
            "/tasks",
            "/tasks/abc-1?x=1&y=%2F",
            "/tasks/a%20b%2Fc",
            "/logs?q=a%25b#top",
            "/tasks/%E2%9C%93",
        ] {
            assert_eq!(safe_next(Some(n.to_owned())), n, "{n:?}");
        }
    }

    #[test]
    fn a_redirect_always_has_a_location() {
        let r = redirect("/a\nb");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "x_tbm_session=no; tbm_session=yes; other=1"
                .parse()
                .expect("hv"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("yes"));
        assert_eq!(cookie(&h, SECURE_SESSION_COOKIE), None);
    }
}
