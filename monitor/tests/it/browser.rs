//! The dashboard in a real headless Chromium driven through chromedriver
//! (CONTRIBUTING.md, "Running the tests"): a monitor process tailing a generated log
//! file, every page opened, its figures compared with the JSON API, a line appended to
//! the file seen live, federation toggled against a real nats-server, an API key made and
//! used, the phone layout checked, and a screenshot
//! of every page under `target/screenshots/`. A second test does the same tour against
//! `truebit-monitor demo` for the README's pictures (`UPDATE_SCREENSHOTS=1` copies them to
//! `docs/screenshots/`).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use truebit_monitor::demo::{Expected, LogGenerator};

use crate::federation::NatsServer;
use crate::support;

const PASSWORD: &str = "browser-test-password-1";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;
/// Bound of every wait for the page or the monitor.
const WAIT: Duration = Duration::from_secs(20);
/// One browser at a time: the two tests would otherwise share two cores between two Chromiums.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- processes ------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A process in a process group of its own: dropping it kills the group (chromedriver and
/// the Chromium it started), also when the test panics.
struct Group {
    child: Child,
}

impl Group {
    fn spawn(cmd: &mut Command) -> std::io::Result<Group> {
        cmd.process_group(0).stdin(Stdio::null());
        cmd.spawn().map(|child| Group { child })
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver_bin() -> String {
    let bin = std::env::var("TRUEBIT_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let found = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let why = if std::env::var_os("CI").is_some() {
            "CI must install it (scripts/test does)"
        } else {
            "run scripts/test or `apt-get install -y chromium chromium-driver`"
        };
        panic!("chromedriver is not installed: the browser test needs a real Chromium; {why}");
    }
    bin
}

/// chromedriver on a free port, waiting until it answers.
struct Chromedriver {
    _group: Group,
    port: u16,
}

impl Chromedriver {
    fn start(dir: &Path) -> Chromedriver {
        let bin = chromedriver_bin();
        let port = free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).expect("driver log");
        let mut group = Group::spawn(
            Command::new(bin)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(log.try_clone().expect("log"))
                .stderr(log),
        )
        .expect("chromedriver starts");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                !group.exited(),
                "chromedriver exited; see {}",
                dir.display()
            );
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Chromedriver {
            _group: group,
            port,
        }
    }
}

/// The monitor binary, logged to a file, its address read from its log.
struct Monitor {
    _group: Group,
    addr: SocketAddr,
    log: PathBuf,
}

impl Monitor {
    fn start(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Monitor {
        let log = dir.join("monitor.log");
        let file = std::fs::File::create(&log).expect("monitor log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_truebit-monitor"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DB_PATH", dir.join("monitor.db"))
            .env("PORT", "0")
            .env("TASK_DATA_PASSWORD", PASSWORD)
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut group = Group::spawn(&mut cmd).expect("monitor binary starts");
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // Its log goes to a file: plain text, with the dashboard's address on a line
            // of its own.
            assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("Dashboard: http://"))
                .and_then(|a| a.strip_suffix('/'))
                .and_then(|a| a.parse().ok());
            if let Some(addr) = found {
                break addr;
            }
            assert!(!group.exited(), "the monitor exited:\n{text}");
            assert!(
                Instant::now() < deadline,
                "the monitor did not listen within {WAIT:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Monitor {
            _group: group,
            addr,
            log,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One HTTP/1.1 request on a fresh connection, outside the browser: status and body. Reads
/// exactly `Content-Length` bytes (chromedriver keeps connections open), within 10 s.
async fn http(addr: SocketAddr, request_head: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "{request_head}\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        if k.eq_ignore_ascii_case("content-length") {
                            v.trim().parse::<usize>().ok()
                        } else {
                            None
                        }
                    })
                    .unwrap_or(0);
                if rest.len() >= length {
                    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
                    return (status, rest.to_owned());
                }
            }
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed mid-answer: {text}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer from {addr} to {request_head} within 10 s"))
}

/// A GET with an optional bearer key; the status.
async fn http_status(addr: SocketAddr, path: &str, bearer: Option<&str>) -> u16 {
    let auth = bearer
        .map(|k| format!("\r\nAuthorization: Bearer {k}"))
        .unwrap_or_default();
    http(addr, &format!("GET {path} HTTP/1.1{auth}"), "")
        .await
        .0
}

// ---- the browser ----------------------------------------------------------------------

/// A Chromium session on one monitor, with its screenshot folder.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    /// chromedriver's port and the session, for the console log.
    driver: u16,
    session: String,
    _driver: Chromedriver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(base: String, shots: PathBuf, dir: &Path) -> Browser {
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        let driver = Chromedriver::start(dir);
        let profile = support::tempdir();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            "--force-color-profile=srgb".into(),
            format!("--window-size={WIDTH},{HEIGHT}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut chrome = json!({ "args": args });
        if let Ok(bin) = std::env::var("TRUEBIT_TEST_CHROMIUM") {
            chrome["binary"] = json!(bin);
        } else if Path::new("/usr/bin/chromium").exists() {
            chrome["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), chrome);
        // The console (script errors, CSP violations) is read back with `console_errors`.
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a Chromium session through chromedriver");
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        let b = Browser {
            client,
            base,
            shots,
            driver: driver.port,
            session,
            _driver: driver,
            _profile: profile,
        };
        b.viewport(WIDTH, HEIGHT).await;
        let inner = b.js("return [window.innerWidth, window.innerHeight]").await;
        assert_eq!(inner, json!([WIDTH, HEIGHT]), "the desktop viewport");
        b
    }

    /// Messages of level SEVERE on the browser console since the last call (script
    /// errors, CSP violations, failed loads), read from chromedriver's log endpoint.
    async fn console_errors(&self) -> Vec<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.driver).into();
        let head = format!(
            "POST /session/{}/se/log HTTP/1.1\r\nContent-Type: application/json",
            self.session
        );
        let (_, text) = http(addr, &head, r#"{"type":"browser"}"#).await;
        let json = text.as_str();
        let v: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("chromedriver log answer ({e}): {text}"));
        v["value"]
            .as_array()
            .unwrap_or_else(|| panic!("chromedriver log answer: {v}"))
            .iter()
            .filter(|e| e["level"] == json!("SEVERE"))
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn close(self) {
        let _ = self.client.close().await;
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// Path and query of the current page.
    async fn at(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no {css} on {}: {e}", self.at().await),
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .expect("text")
            .trim()
            .to_owned()
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Texts of the elements matching `css`, in document order.
    async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent.trim());",
                vec![json!(css)],
            )
            .await
            .expect("texts");
        serde_json::from_value(v).expect("strings")
    }

    async fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        let v = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.getAttribute(arguments[1]) || '');",
                vec![json!(css), json!(attr)],
            )
            .await
            .expect("attributes");
        serde_json::from_value(v).expect("strings")
    }

    /// The JSON API through the browser's own session (its cookie), without navigating.
    async fn api(&self, path: &str) -> Value {
        let v = self
            .client
            .execute_async(
                "const [p, done] = arguments; fetch(p, {credentials: 'same-origin'}) \
                 .then(r => r.text().then(t => done([r.status, t]))) \
                 .catch(e => done([0, String(e)]));",
                vec![json!(path)],
            )
            .await
            .unwrap_or_else(|e| panic!("fetch {path}: {e}"));
        let status = v[0].as_u64().unwrap_or(0);
        let body = v[1].as_str().unwrap_or_default();
        assert_eq!(status, 200, "GET {path} answered {status}: {body}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Polls `script` (an expression) until it is truthy.
    async fn wait_until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let code = format!("return ({script});");
        loop {
            let v = self.client.execute(&code, vec![]).await;
            match v {
                Ok(v) if truthy(&v) => return v,
                last => {
                    if Instant::now() > deadline {
                        panic!(
                            "timed out after {WAIT:?} waiting for {what} on {}; last: {last:?}",
                            self.at().await
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_at(&self, path_prefix: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let at = self.at().await;
            let ready = self.js("return document.readyState").await;
            if at.starts_with(path_prefix) && ready == json!("complete") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected to reach {path_prefix}, still at {at}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// The page has its stylesheet and scripts: theme.js marks `<html class="js">`, and
    /// the stylesheet has rules (both would be missing if the CSP blocked them).
    async fn assert_page_ok(&self, page: &str) {
        let js = self
            .js("return document.documentElement.classList.contains('js')")
            .await;
        assert_eq!(js, json!(true), "{page}: theme.js did not run");
        let css = self
            .js("return Array.from(document.styleSheets).some(s => s.href && s.href.includes('/static/') && s.cssRules.length > 0)")
            .await;
        assert_eq!(css, json!(true), "{page}: the stylesheet did not load");
        let errors = self.console_errors().await;
        assert!(
            errors.is_empty(),
            "{page}: errors on the browser console (script errors, CSP violations): {errors:#?}"
        );
    }

    /// The phone viewport (390 × 844 CSS pixels) or back to the desktop one.
    async fn viewport(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("window size");
        // The window includes the (invisible) browser frame: grow it by the difference.
        let v = self
            .js("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
            .await;
        let extra = |i: usize| u32::try_from(v[i].as_i64().unwrap_or(0).max(0)).unwrap_or(0);
        if extra(0) > 0 || extra(1) > 0 {
            self.client
                .set_window_size(width + extra(0), height + extra(1))
                .await
                .expect("window size");
        }
    }

    /// A phone (390 × 844 CSS pixels, touch, mobile viewport rules) through Chromium's
    /// device emulation (a headless window cannot be narrower than 500 px), or back.
    async fn phone(&self, on: bool) {
        let (cmd, params) = if on {
            (
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": PHONE_WIDTH, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
            )
        } else {
            ("Emulation.clearDeviceMetricsOverride", json!({}))
        };
        let addr: SocketAddr = ([127, 0, 0, 1], self.driver).into();
        let head = format!(
            "POST /session/{}/goog/cdp/execute HTTP/1.1\r\nContent-Type: application/json",
            self.session
        );
        let body = json!({ "cmd": cmd, "params": params }).to_string();
        let (status, answer) = http(addr, &head, &body).await;
        assert_eq!(status, 200, "{cmd}: {answer}");
    }

    async fn inner_width(&self) -> i64 {
        self.js("return window.innerWidth")
            .await
            .as_i64()
            .expect("innerWidth")
    }

    /// On the phone: the page is no wider than the phone (390 px). Chromium's mobile
    /// emulation widens the layout viewport to fit wider content (zooming out), so
    /// `innerWidth` must stay 390 too. `None` when it fits, else what is too wide.
    async fn phone_overflow(&self) -> Option<String> {
        let v = self
            .js("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        let (scroll, inner) = (v[0].as_i64().expect("sw"), v[1].as_i64().expect("iw"));
        let limit = i64::from(PHONE_WIDTH) + 1;
        (scroll > limit || inner > limit)
            .then(|| format!("{scroll} px wide (layout viewport {inner} px)"))
    }

    async fn assert_fits(&self, page: &str) {
        if let Some(wide) = self.phone_overflow().await {
            panic!(
                "{page} on a phone ({PHONE_WIDTH} px) is {wide}: horizontal scrolling; sticking out: {}",
                self.js(WIDEST).await
            );
        }
    }
}

const PHONE_WIDTH: u32 = 390;

/// The elements sticking out of the phone's width furthest, not counting those inside a
/// scrolling box (for the overflow message).
const WIDEST: &str = "const clipped = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) { \
      if (getComputedStyle(p).overflowX !== 'visible') { return true; } } return false; }; \
    const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') \
      + (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\\s+/).join('.') : ''); \
    return Array.from(document.querySelectorAll('body *')) \
    .map(e => [e.getBoundingClientRect().right, e]) \
    .filter(x => x[0] > 391 && !clipped(x[1])).sort((a, b) => b[0] - a[0]).slice(0, 6) \
    .map(x => name(x[1]) + ' (right edge ' + Math.round(x[0]) + ' px)').join(', ');";

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// "5,656" -> 5656; "—" -> 0.
fn figure(text: &str) -> u64 {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

fn ids(v: &Value, field: &str) -> Vec<String> {
    v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| match &i[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

// ---- the fixture ----------------------------------------------------------------------

const NS: i64 = 1_000_000_000;
const DAY_SECS: i64 = 86_400;

fn now_secs() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    now.unix_timestamp()
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn node_stamp(secs: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).expect("time");
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .expect("format")
}

/// The project's generator, `tasks` tasks, ending shortly before now (today, UTC, if
/// the day is old enough), so that the overview's "today" panel has figures.
fn todays_fixture(seed: u64, tasks: u64) -> (String, Expected, i64, i64) {
    let span = |start: i64| {
        let mut g = LogGenerator::new(seed, start)
            .with_banner(false)
            .with_task_limit(tasks);
        let mut text = String::new();
        let mut last = start;
        while !g.is_done() {
            let line = g.next_line();
            last = line.node_time_secs;
            text.push_str(&line.text);
            text.push('\n');
        }
        (text, g.expected(), last)
    };
    let now = now_secs();
    let (_, _, last) = span(now);
    let length = last - now;
    let midnight = now - now.rem_euclid(DAY_SECS);
    let start = (now - length - 120).max(midnight + 1);
    let (text, expected, last) = span(start);
    (text, expected, start, last)
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open the log file");
    f.write_all(text.as_bytes()).expect("append");
}

// ---- the tours ------------------------------------------------------------------------

/// Logs in through the form (after checking that `/` needs it and a wrong password fails).
async fn log_in(b: &Browser) {
    b.goto("/").await;
    b.wait_at("/login").await;
    b.shot("login").await;
    b.assert_page_ok("login").await;
    assert!(
        b.client.find(Locator::Css("#logout")).await.is_err(),
        "the login page offers no logout"
    );

    b.find("#password")
        .await
        .send_keys("not-the-password")
        .await
        .expect("type");
    b.click("#login-submit").await;
    b.wait_until("the login error", "document.getElementById('login-error')")
        .await;
    let error = b.text("#login-error").await;
    assert!(!error.is_empty(), "#login-error says why");
    assert!(
        b.at().await.starts_with("/login"),
        "still on the login page"
    );
    // The refused login is a 401 (the browser logs it as a failed load); nothing else.
    let errors: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| !(e.contains("/login") && e.contains("status of 401")))
        .collect();
    assert!(errors.is_empty(), "login: console errors {errors:#?}");

    b.find("#password")
        .await
        .send_keys(PASSWORD)
        .await
        .expect("type");
    b.click("#login-submit").await;
    b.wait_until(
        "the overview after logging in",
        "location.pathname === '/' && document.querySelector('[data-figure=container]')",
    )
    .await;
}

/// Chooses `value` in the `<select>` `css`.
async fn select(b: &Browser, css: &str, value: &str) {
    b.find(css)
        .await
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser_matches_the_api() {
    let _one = ONE_BROWSER.lock().await;
    tokio::time::timeout(Duration::from_secs(180), tour_on_a_fixture())
        .await
        .expect("the browser tour finished within 180 s");
}

async fn tour_on_a_fixture() {
    let started = Instant::now();
    let dir = support::tempdir();
    let node_log = dir.path().join("node.log");
    let (fixture, expected, fixture_start, fixture_end) = todays_fixture(7, 64);
    std::fs::write(&node_log, &fixture).expect("fixture");
    let nats = NatsServer::start(dir.path());
    let monitor = Monitor::start(
        dir.path(),
        &["run"],
        &[
            ("LOG_FILE", node_log.display().to_string()),
            ("LOG_RETENTION_DAYS", "0".into()),
            ("FEDERATION_NATS_URL", nats.url()),
        ],
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let b = Browser::open(monitor.base(), shots.clone(), dir.path()).await;

    // -- login ---------------------------------------------------------------------------
    log_in(&b).await;

    // Everything in the file is in the store (exact counts from the generator).
    let today = now_secs() - now_secs().rem_euclid(DAY_SECS);
    let all = format!(
        "/api/stats?from={}&to={}",
        rfc3339(today - 7 * DAY_SECS),
        rfc3339(now_secs() + 3600)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = b.api(&all).await;
        let t = &s["tasks"];
        if t["completed"] == json!(expected.tasks_completed)
            && t["failed"] == json!(expected.tasks_failed)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fixture was not ingested within 30 s: api {t}, generator {expected:?}\n{}",
            monitor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let invoices = b.api("/api/invoices?limit=500").await;
    assert_eq!(
        invoices["items"].as_array().map(Vec::len),
        Some(usize::try_from(expected.invoices).expect("count")),
        "every invoice of the fixture"
    );

    // -- overview ------------------------------------------------------------------------
    b.goto("/").await;
    b.assert_page_ok("overview").await;
    for key in [
        "container",
        "docker",
        "version",
        "uptime",
        "slots",
        "last_line",
    ] {
        let n = b
            .attrs(&format!("[data-card={key}] [data-figure={key}]"), "class")
            .await;
        assert_eq!(n.len(), 1, "the overview has the {key} card");
    }
    assert_eq!(
        b.text("[data-card=container] [data-figure=container]")
            .await,
        "Log file"
    );
    let status = b.api("/api/status").await;
    assert_eq!(
        b.text("[data-card=version] [data-figure=version]").await,
        status["node"]["version"].as_str().expect("node version"),
        "node version card = /api/status"
    );
    assert_eq!(status["node"]["version"], json!(expected.version));
    let now = now_secs();
    let next_hour = now - now.rem_euclid(3600) + 3600;
    let week_start = {
        let day = today / DAY_SECS;
        (day - (day + 3).rem_euclid(7)) * DAY_SECS
    };
    for (period, from) in [("today", today), ("week", week_start)] {
        let s = b
            .api(&format!(
                "/api/stats?from={}&to={}",
                rfc3339(from),
                rfc3339(next_hour)
            ))
            .await;
        for fig in ["completed", "failed", "executing"] {
            let shown = figure(
                &b.text(&format!("[data-period={period}] [data-figure={fig}]"))
                    .await,
            );
            assert_eq!(
                Some(shown),
                s["tasks"][fig].as_u64(),
                "overview {period} {fig} = /api/stats since {}",
                rfc3339(from)
            );
        }
        let invoices = b
            .api(&format!(
                "/api/invoices?from={}&to={}&limit=500",
                rfc3339(from),
                rfc3339(next_hour)
            ))
            .await;
        let shown = figure(
            &b.text(&format!("[data-period={period}] [data-figure=invoices]"))
                .await,
        );
        assert_eq!(
            Some(shown),
            invoices["items"].as_array().map(|a| a.len() as u64),
            "overview {period} invoices = /api/invoices since {}",
            rfc3339(from)
        );
    }
    if fixture_start > today && fixture_end < now {
        // The whole fixture lies in today: the panel shows the generator's own counts.
        assert_eq!(
            figure(&b.text("[data-period=today] [data-figure=completed]").await),
            expected.tasks_completed
        );
        assert_eq!(
            figure(&b.text("[data-period=today] [data-figure=failed]").await),
            expected.tasks_failed
        );
    }
    let latest = b.api("/api/tasks?limit=10").await;
    assert_eq!(
        b.attrs("#task-table tbody tr[data-execution]", "data-execution")
            .await,
        ids(&latest, "execution_id"),
        "the overview's latest tasks = /api/tasks?limit=10"
    );
    b.shot("overview").await;

    // -- theme ---------------------------------------------------------------------------
    let effective = "return document.documentElement.dataset.theme || \
        (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light')";
    let before = b.js(effective).await;
    let flipped = json!(if before == json!("dark") {
        "light"
    } else {
        "dark"
    });
    b.click("#theme-toggle").await;
    assert_eq!(
        b.js("return document.documentElement.dataset.theme").await,
        flipped,
        "#theme-toggle flips data-theme"
    );
    b.goto("/tasks").await;
    assert_eq!(
        b.js(effective).await,
        flipped,
        "the theme is kept across pages"
    );
    b.click("#theme-toggle").await;
    assert_eq!(b.js(effective).await, before, "and flips back");
    b.js("localStorage.setItem('tbm-theme', 'dark')").await;
    b.goto("/").await;
    assert_eq!(b.js(effective).await, json!("dark"));
    b.shot("overview-dark").await;
    b.js("localStorage.setItem('tbm-theme', 'light')").await;

    // -- tasks ---------------------------------------------------------------------------
    b.goto("/tasks").await;
    b.assert_page_ok("tasks").await;
    let first = b.api("/api/tasks?limit=50").await;
    assert_eq!(
        b.attrs("#task-table tbody tr[data-execution]", "data-execution")
            .await,
        ids(&first, "execution_id"),
        "/tasks first page = /api/tasks?limit=50"
    );
    assert!(
        b.client.find(Locator::Css("a[rel=next]")).await.is_ok()
            == first["next_cursor"].is_string(),
        "an 'Older' link exactly when the API has a next page"
    );
    b.shot("tasks").await;
    select(&b, "#f-status", "failed").await;
    b.click("form.filters button[type=submit]").await;
    b.wait_at("/tasks?").await;
    assert!(
        b.at().await.contains("status=failed"),
        "the filter is in the URL: {}",
        b.at().await
    );
    let failed = b.api("/api/tasks?status=failed&limit=200").await;
    assert_eq!(
        failed["items"].as_array().map(Vec::len),
        Some(expected.tasks_failed as usize)
    );
    assert_eq!(
        b.attrs("#task-table tbody tr[data-execution]", "data-execution")
            .await,
        ids(&failed, "execution_id"),
        "/tasks?status=failed = /api/tasks?status=failed"
    );
    let badges = b.texts("#task-table tbody tr td:nth-child(2) .badge").await;
    assert!(
        !badges.is_empty() && badges.iter().all(|s| s == "failed"),
        "only failed tasks: {badges:?}"
    );
    // The failure reason column: the full reason on hover, as the API has it.
    let reasons: Vec<String> = failed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| {
            t["error"]
                .as_str()
                .expect("a demo failure has a reason")
                .to_owned()
        })
        .collect();
    assert_eq!(
        b.attrs("#task-table tbody td.reason", "title").await,
        reasons,
        "the reasons' titles = /api/tasks?status=failed errors"
    );

    // -- one task ------------------------------------------------------------------------
    let id = ids(&failed, "execution_id").remove(0);
    b.click(&format!("#task-table tr[data-execution='{id}'] a"))
        .await;
    b.wait_at(&format!("/tasks/{id}")).await;
    b.assert_page_ok("task").await;
    let task = b.api(&format!("/api/tasks/{id}")).await;
    assert_eq!(b.text("#task-id").await, id);
    assert_eq!(
        b.text("#task-status").await,
        task["task"]["status"].as_str().expect("status"),
        "#task-status = /api/tasks/{{id}}"
    );
    assert_eq!(
        b.text("#task-error").await,
        task["task"]["error"].as_str().expect("reason"),
        "#task-error = /api/tasks/{{id}} error"
    );
    b.shot("task").await;

    // -- invoices ------------------------------------------------------------------------
    b.goto("/invoices").await;
    b.assert_page_ok("invoices").await;
    let page = b.api("/api/invoices?limit=50").await;
    assert_eq!(
        b.attrs("#invoice-table tbody tr[data-invoice]", "data-invoice")
            .await,
        ids(&page, "id"),
        "/invoices first page = /api/invoices?limit=50"
    );
    b.shot("invoices").await;

    // -- logs, live ----------------------------------------------------------------------
    b.goto("/logs").await;
    b.assert_page_ok("logs").await;
    b.wait_until(
        "the live tail to connect",
        "document.getElementById('live-state').textContent === 'Live'",
    )
    .await;
    let rows_before = b
        .js("return document.querySelectorAll('#log-table tbody tr[data-id]').length")
        .await;
    let marker = format!("browser-test live line {}", std::process::id());
    let line = |word: &str| {
        format!(
            "{} info: @truebit/worker-runner-node:{} {marker} {word}\n",
            node_stamp(now_secs()),
            expected.version
        )
    };
    b.js("window.__tbmNoReload = true").await;
    append(&node_log, &line("first"));
    let has_row = |word: &str| {
        format!(
            "Array.from(document.querySelectorAll('#log-table tbody tr[data-id] td.msg')).some(td => td.textContent.includes('{marker} {word}'))"
        )
    };
    b.wait_until("the appended line in the table (live)", &has_row("first"))
        .await;
    assert_eq!(
        b.js("return window.__tbmNoReload === true").await,
        json!(true),
        "the row came without reloading the page"
    );
    assert!(rows_before.as_u64().is_some());

    b.click("#live-toggle").await;
    assert_eq!(b.text("#live-toggle").await, "Resume");
    assert_eq!(b.text("#live-state").await, "Paused");
    append(&node_log, &line("second"));
    b.wait_until(
        "the paused tail to count the new line",
        "document.getElementById('live-pending').textContent.startsWith('1 new')",
    )
    .await;
    assert_eq!(
        b.js(&format!("return {}", has_row("second"))).await,
        json!(false),
        "paused: no new row"
    );
    b.click("#live-toggle").await;
    assert_eq!(b.text("#live-toggle").await, "Pause");
    b.wait_until("the held-back line after Resume", &has_row("second"))
        .await;
    assert_eq!(b.text("#live-pending").await, "");
    b.assert_page_ok("logs after live rows").await;
    b.shot("logs").await;

    // -- federation ----------------------------------------------------------------------
    b.goto("/federation").await;
    b.assert_page_ok("federation").await;
    assert_eq!(b.text("#federation-state").await, "off");
    assert_eq!(
        b.api("/api/federation/status").await["settings"]["enabled"],
        json!(false)
    );
    assert_eq!(
        nats.connections(),
        0,
        "federation off: no connection to the hub"
    );
    assert_eq!(
        b.js("return document.getElementById('federation-toggle').disabled")
            .await,
        json!(false),
        "a configured server: the button can be pressed"
    );
    b.click("#federation-toggle").await;
    b.wait_until(
        "federation on",
        "document.readyState === 'complete' && document.getElementById('federation-state') && document.getElementById('federation-state').textContent.trim() === 'on'",
    )
    .await;
    let st = b.api("/api/federation/status").await;
    assert_eq!(
        st["settings"]["enabled"],
        json!(true),
        "/api/federation/status after the click: {st}"
    );
    support::wait_for(
        "the monitor's connection to nats-server",
        WAIT,
        || match nats.connections() {
            0 => Err(0),
            n => Ok(n),
        },
    )
    .await;
    // On: the uptime proof section; without pinned hub keys it says what to set.
    assert_eq!(b.text("#proof-h").await, "Uptime proof");
    assert!(
        b.text("#proof-no-keys")
            .await
            .starts_with("No hub keys are pinned"),
        "the proof section names the missing keys"
    );
    b.shot("federation").await;
    b.click("#federation-toggle").await;
    b.wait_until(
        "federation off",
        "document.readyState === 'complete' && document.getElementById('federation-state') && document.getElementById('federation-state').textContent.trim() === 'off'",
    )
    .await;
    assert_eq!(
        b.api("/api/federation/status").await["settings"]["enabled"],
        json!(false)
    );
    support::wait_for("the hub connection to close", WAIT, || {
        match nats.connections() {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;

    // -- settings: an API key --------------------------------------------------------------
    b.goto("/settings").await;
    b.assert_page_ok("settings").await;
    let name = "browser-test";
    b.find("#key-name")
        .await
        .send_keys(name)
        .await
        .expect("type");
    select(&b, "#key-scope", "read").await;
    b.click("#key-create").await;
    b.wait_until("the new key", "document.getElementById('new-key')")
        .await;
    let key = b.text("#new-key").await;
    assert!(key.starts_with("tbm_"), "the new key: {key:?}");
    assert_eq!(
        http_status(monitor.addr, "/api/status", Some(&key)).await,
        200,
        "the read key works"
    );
    assert_eq!(
        http_status(monitor.addr, "/api/status", None).await,
        401,
        "and is needed"
    );
    b.shot("settings").await;
    let row = b
        .js(&format!(
            "return Array.from(document.querySelectorAll('#key-table tr[data-key]')).filter(r => r.cells[0].textContent === '{name}').map(r => r.getAttribute('data-key'))[0] || ''"
        ))
        .await;
    let row = row.as_str().expect("the key's row").to_owned();
    assert!(!row.is_empty(), "the key is listed");
    b.click(&format!(
        "#key-table tr[data-key='{row}'] button[type=submit]"
    ))
    .await;
    b.wait_until(
        "the key revoked",
        &format!("document.readyState === 'complete' && !document.querySelector(\"#key-table tr[data-key='{row}'] button\")"),
    )
    .await;
    assert_eq!(
        http_status(monitor.addr, "/api/status", Some(&key)).await,
        401,
        "the revoked key no longer works"
    );

    // -- a phone ---------------------------------------------------------------------------
    b.phone(true).await;
    b.goto("/").await;
    let inner = b.inner_width().await;
    assert!(inner <= 400, "a phone-sized viewport (innerWidth {inner})");
    b.shot("overview-phone").await;
    b.assert_fits("the overview").await;
    b.goto("/tasks").await;
    b.assert_fits("the tasks page").await;
    // The other pages too; a failure is only reported at the end (see below).
    let mut too_wide = Vec::new();
    for page in [
        format!("/tasks/{id}"),
        "/invoices".into(),
        "/logs".into(),
        "/federation".into(),
        "/settings".into(),
    ] {
        b.goto(&page).await;
        let name = page
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("page");
        let name = if page.starts_with("/tasks/") {
            "task"
        } else {
            name
        };
        b.shot(&format!("{name}-phone")).await;
        if let Some(wide) = b.phone_overflow().await {
            too_wide.push(format!(
                "{page} is {wide}; sticking out: {}",
                b.js(WIDEST).await
            ));
        }
    }
    b.phone(false).await;

    // -- log out ---------------------------------------------------------------------------
    b.goto("/").await;
    b.click("#logout").await;
    b.wait_at("/login").await;
    b.goto("/").await;
    b.wait_at("/login").await;
    assert_eq!(
        b.api_status("/api/status").await,
        401,
        "the session is gone"
    );

    b.close().await;
    drop(monitor);
    // PAGE BUG (reported, web/ is not this test's to fix): on a 390 px phone the task
    // page and the invoices page are wider than the screen. This assertion is last so that
    // everything above still runs; it fails until the pages fit.
    assert!(
        too_wide.is_empty(),
        "pages wider than a phone:\n{}",
        too_wide.join("\n")
    );
    eprintln!(
        "browser test: {:.1} s, screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

impl Browser {
    async fn api_status(&self, path: &str) -> u64 {
        let v = self
            .client
            .execute_async(
                "const [p, done] = arguments; fetch(p, {credentials: 'same-origin'}).then(r => done(r.status)).catch(() => done(0));",
                vec![json!(path)],
            )
            .await
            .expect("fetch");
        v.as_u64().unwrap_or(0)
    }
}

/// The monitor following `node_log` (history kept whatever its age), and a browser
/// logged in to it.
async fn follow_file(dir: &Path, node_log: &Path) -> (Monitor, Browser) {
    let monitor = Monitor::start(
        dir,
        &["run"],
        &[
            ("LOG_FILE", node_log.display().to_string()),
            ("LOG_RETENTION_DAYS", "0".into()),
        ],
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let b = Browser::open(monitor.base(), shots, dir).await;
    log_in(&b).await;
    (monitor, b)
}

/// The overview follows the node without a reload: tasks finished after the page was
/// loaded reach today's counts and the latest-tasks table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_follow_new_tasks_without_a_reload() {
    let dir = support::tempdir();
    let node_log = dir.path().join("node.log");
    let (first, before, _, _) = todays_fixture(11, 2);
    // Two more tasks of another node run, printed once the page is open.
    let (more, after, _, _) = todays_fixture(12, 2);
    std::fs::write(&node_log, &first).expect("fixture");
    let (monitor, b) = follow_file(dir.path(), &node_log).await;
    // Read in one script: the live refresh may replace the element between a lookup and
    // a read.
    let today = async || {
        b.js(
            "var e = document.querySelector('[data-period=today] [data-figure=completed]'); \
              return e ? e.textContent.trim() : '';",
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    };
    let recent_rows = async || {
        b.js("return document.querySelectorAll('#recent tbody tr').length;")
            .await
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.goto("/").await;
        if today().await == before.tasks_completed.to_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first tasks were not shown: {}\n{}",
            today().await,
            monitor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(recent_rows().await, before.tasks_created);

    append(&node_log, &more);
    let want = (before.tasks_completed + after.tasks_completed).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while today().await != want {
        assert!(
            Instant::now() < deadline,
            "today's count did not follow: {} (want {want})",
            today().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        recent_rows().await,
        before.tasks_created + after.tasks_created,
        "the latest tasks follow too"
    );
    b.close().await;
    drop(monitor);
}

/// Node-controlled text cannot distort the pages: a task whose chain id is 5,000
/// characters and whose task id carries a right-to-left override fits a 390 px phone on
/// the tasks list and the task's page; the list shows the chain id cut, with the whole
/// value on hover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_node_values_fit_a_phone() {
    let dir = support::tempdir();
    let node_log = dir.path().join("node.log");
    let chain = "7".repeat(5000);
    let exec = "0b5e551e-0000-4000-8000-000000005000";
    std::fs::write(
        &node_log,
        format!(
            "{} info: @truebit/worker-runner-node:2.4.1 Message received from task_created: \
             {{\"type\":\"task_created\",\"executionId\":\"{exec}\",\"message\":{{\"taskId\":\"rs_\u{202E}cod.exe\",\
             \"executionId\":\"{exec}\",\"chainId\":\"{chain}\"}}}}\n",
            node_stamp(now_secs() - 60)
        ),
    )
    .expect("log");
    let (monitor, b) = follow_file(dir.path(), &node_log).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = b.api("/api/tasks").await;
        if tasks["items"][0]["chain_id"].as_str().map(str::len) == Some(5000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the task was not ingested: {tasks}\n{}",
            monitor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.phone(true).await;
    for page in ["/tasks".to_owned(), format!("/tasks/{exec}")] {
        b.goto(&page).await;
        b.assert_page_ok(&page).await;
        assert_eq!(b.phone_overflow().await, None, "{page} fits the phone");
    }
    // A chart wider than the phone starts at its right end, where the newest hours are.
    b.goto("/").await;
    let at_the_end = b
        .js("var c = document.querySelector('#chart-hourly .chart-box'); \
             return [c.scrollWidth > c.clientWidth, c.scrollLeft + c.clientWidth >= c.scrollWidth - 1];")
        .await;
    assert_eq!(
        at_the_end,
        json!([true, true]),
        "the hourly chart on a phone"
    );
    // The header is one row, and a log line's message is on screen without scrolling.
    let header = b
        .js("return document.querySelector('header.top').getBoundingClientRect().height;")
        .await;
    assert!(
        header.as_f64().is_some_and(|h| h < 56.0),
        "the header on a phone is {header} px high"
    );
    b.goto("/logs").await;
    let message = b
        .js(
            "var cells = document.querySelectorAll('#log-table td.msg'); \
             var right = 0, left = 1e9, narrow = 1e9; \
             for (var i = 0; i < cells.length; i++) { var r = cells[i].getBoundingClientRect(); \
               right = Math.max(right, r.right); left = Math.min(left, r.left); \
               narrow = Math.min(narrow, r.width); } \
             return [cells.length > 0 && left >= 0, right <= window.innerWidth, narrow > 200];",
        )
        .await;
    assert_eq!(
        message,
        json!([true, true, true]),
        "the log message on a phone"
    );
    b.goto("/tasks").await;
    let titles = b.attrs("td.node[title]", "title").await;
    assert_eq!(titles, vec![chain.clone()], "the whole chain id on hover");
    let shown = b.text("td.node[title]").await;
    assert!(
        shown.chars().count() <= 25 && chain.starts_with(shown.trim_end_matches('…')),
        "the cell shows the chain id cut: {shown:?}"
    );
    b.phone(false).await;
    b.close().await;
    drop(monitor);
}

/// The README's pictures: the same pages on `truebit-monitor demo` (24 h of simulated
/// history). Saved under target/screenshots/demo/; `UPDATE_SCREENSHOTS=1` also copies
/// them into docs/screenshots/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_the_demo() {
    let _one = ONE_BROWSER.lock().await;
    tokio::time::timeout(Duration::from_secs(240), tour_of_the_demo())
        .await
        .expect("the demo tour finished within 240 s");
}

async fn tour_of_the_demo() {
    let started = Instant::now();
    let dir = support::tempdir();
    let monitor = Monitor::start(dir.path(), &["demo"], &[]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("target/screenshots/demo");
    let b = Browser::open(monitor.base(), shots.clone(), dir.path()).await;
    log_in(&b).await;
    // Back-filled until now: the newest entry is from the last minutes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let logs = b.api("/api/logs?limit=1").await;
        let newest = logs["items"][0]["time_ns"].as_i64().unwrap_or(0);
        if newest > (now_secs() - 300) * NS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not catch up within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.goto("/").await;
    b.shot("overview").await;
    b.click("#theme-toggle").await;
    b.shot("overview-dark").await;
    b.click("#theme-toggle").await;
    b.goto("/tasks").await;
    b.shot("tasks").await;
    // A task of the back-filled history (with its invoice), not one of the catch-up burst.
    let tasks = b
        .api(&format!(
            "/api/tasks?status=completed&limit=1&to={}",
            rfc3339(now_secs() - 3600)
        ))
        .await;
    let id = ids(&tasks, "execution_id").remove(0);
    b.goto(&format!("/tasks/{id}")).await;
    b.shot("task").await;
    for page in ["invoices", "logs", "federation", "settings"] {
        b.goto(&format!("/{page}")).await;
        if page == "logs" {
            b.wait_until(
                "the live tail",
                "document.getElementById('live-state').textContent === 'Live'",
            )
            .await;
        }
        b.assert_page_ok(page).await;
        if page == "federation" {
            // No FEDERATION_NATS_URL: the page says so and the button cannot be pressed.
            assert_eq!(b.text("#federation-state").await, "off");
            assert_eq!(
                b.js("return document.getElementById('federation-toggle').disabled")
                    .await,
                json!(true),
                "#federation-toggle is disabled without a federation server"
            );
        }
        b.shot(page).await;
    }
    b.phone(true).await;
    b.goto("/").await;
    b.shot("overview-phone").await;
    b.phone(false).await;
    b.goto("/").await;
    b.click("#logout").await;
    b.wait_at("/login").await;
    b.shot("login").await;
    b.close().await;

    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = root.join("docs/screenshots");
        std::fs::create_dir_all(&docs).expect("docs/screenshots");
        for entry in std::fs::read_dir(&shots).expect("screenshots") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "png") {
                std::fs::copy(&path, docs.join(path.file_name().expect("name"))).expect("copy");
            }
        }
        eprintln!("copied the screenshots into {}", docs.display());
    }
    eprintln!(
        "demo screenshots: {:.1} s, in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

/// The Alerts page in a real browser: a configured channel's test button answers (a
/// receiver that cannot be reached: the page says the channel did not take it), a channel
/// is added with the form, tested and deleted; nothing on the page shows its URL, and the
/// console stays clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_tested_added_and_deleted_on_the_alerts_page() {
    let dir = support::tempdir();
    let node_log = dir.path().join("node.log");
    std::fs::write(&node_log, "").expect("node log");
    let monitor = Monitor::start(
        dir.path(),
        &["run"],
        &[
            ("LOG_FILE", node_log.display().to_string()),
            (
                "ALERT_WEBHOOK_URL",
                "http://127.0.0.1:9/configured-hook".into(),
            ),
            ("ALERT_TIMEOUT", "2s".into()),
        ],
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let b = Browser::open(monitor.base(), shots, dir.path()).await;
    log_in(&b).await;

    b.goto("/alerts").await;
    b.assert_page_ok("alerts").await;
    assert_eq!(b.attrs("[data-channel]", "data-channel").await, ["webhook"]);
    b.click("[data-test-channel=webhook]").await;
    b.wait_until(
        "the test's answer",
        "document.getElementById('alerts-message')",
    )
    .await;
    assert!(
        b.text("#alerts-message")
            .await
            .contains("did not take the test message"),
        "{}",
        b.text("#alerts-message").await
    );

    // Add a channel with the form.
    b.click("#add-channel summary").await;
    b.find("#add-channel input[name=name]")
        .await
        .send_keys("phone")
        .await
        .expect("type");
    select(&b, "#add-channel select[name=kind]", "ntfy").await;
    b.find("#add-channel input[name=url]")
        .await
        .send_keys("http://127.0.0.1:9/secret-topic")
        .await
        .expect("type");
    b.click("#add-channel button[type=submit]").await;
    b.wait_until(
        "the channel added",
        "document.querySelector('[data-channel=phone]')",
    )
    .await;
    assert!(b.text("#alerts-message").await.contains("Channel added"));
    assert_eq!(
        b.attrs("[data-channel]", "data-channel").await,
        ["webhook", "phone"]
    );
    assert_eq!(b.text("[data-channel=phone] [data-set]").await, "set: url");
    let html = b.js("return document.documentElement.outerHTML").await;
    let html = html.as_str().unwrap_or_default();
    assert!(
        !html.contains("secret-topic") && !html.contains("configured-hook"),
        "a URL is shown"
    );
    let api = b.api("/api/alerts").await;
    let phone = api["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["name"] == "phone")
        .cloned()
        .expect("phone in the API");
    assert_eq!(
        (&phone["kind"], &phone["source"]),
        (&json!("ntfy"), &json!("database"))
    );

    // Test it, then delete it.
    b.click("[data-test-channel=phone]").await;
    b.wait_until(
        "the test's answer",
        "document.getElementById('alerts-message') && location.search.includes('m=failed')",
    )
    .await;
    b.click("[data-channel=phone] details summary").await;
    b.click("[data-delete-channel=phone]").await;
    b.wait_until(
        "the channel deleted",
        "!document.querySelector('[data-channel=phone]') && location.search.includes('m=channel-deleted')",
    )
    .await;
    assert_eq!(b.attrs("[data-channel]", "data-channel").await, ["webhook"]);
    b.shot("alerts").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "alerts: console errors {errors:#?}");
    b.close().await;
    drop(monitor);
}

/// The live log tail shows an entry that the node went on printing after a pause once:
/// the stream's `removed` event drops the shorter version when the longer one arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_log_replaces_an_entry_continued_after_a_pause() {
    let dir = support::tempdir();
    let node_log = dir.path().join("node.log");
    std::fs::write(&node_log, "").expect("node log");
    let (monitor, b) = follow_file(dir.path(), &node_log).await;
    b.goto("/logs").await;
    b.wait_until("the live tail", "document.querySelector('#log-table')")
        .await;
    let logger = "@truebit/worker-runner-node-0x00000000000000000000000000000000000000aa:2.4.1";
    append(
        &node_log,
        &format!("{} info: {logger} Worker ready\n", node_stamp(now_secs())),
    );
    // How many rows of the table hold `text` (an expression).
    let rows_with = |text: &'static str| {
        format!(
            "Array.from(document.querySelectorAll('#log-table tbody tr[data-id]')).filter(r => r.textContent.includes('{text}')).length"
        )
    };
    b.wait_until(
        "the first version on the live tail",
        &format!("{} > 0", rows_with("Worker ready")),
    )
    .await;
    // Well past the 50 ms after which a finished-looking entry is stored and shown.
    tokio::time::sleep(Duration::from_millis(800)).await;
    append(&node_log, "  with 4 slots\n");
    b.wait_until(
        "the longer version on the live tail",
        &format!("{} > 0", rows_with("with 4 slots")),
    )
    .await;
    let count = async |text: &'static str| b.js(&format!("return {};", rows_with(text))).await;
    assert_eq!(
        count("Worker ready").await,
        json!(1),
        "one row for the entry: ids {:?}; stored {}",
        b.attrs("#log-table tbody tr[data-id]", "data-id").await,
        b.api("/api/logs").await
    );
    // The server agrees after a reload.
    b.goto("/logs").await;
    b.wait_until("the log page", "document.querySelector('#log-table')")
        .await;
    assert_eq!(count("Worker ready").await, json!(1));
    assert_eq!(count("with 4 slots").await, json!(1));
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "logs: console errors {errors:#?}");
    b.close().await;
    drop(monitor);
}
