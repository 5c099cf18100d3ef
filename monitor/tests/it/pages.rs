//! The dashboard's pages, in-process: who may see them, what they show (compared with
//! the JSON API and the fixture's known figures), their forms (CSRF, origin, the
//! password, keys shown once, retention that survives a restart), empty and broken
//! states, and the static assets. The real-browser test is in `browser.rs`.

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use serde_json::Value;
use truebit_monitor::demo::FIXTURE_START_SECS;
use truebit_monitor::federation::FederationConfig;
use truebit_monitor::source::{Connection, ContainerState, SourceStatus};
use truebit_monitor::store::settings::SettingSource;

use crate::http::{
    app_at, import_odd_ids, ip, request, settings, Auth, Resp, TestApp, KEY, ODD_IDS, PASSWORD,
};
use crate::support;

/// Two hours after the fixture began, on the same UTC day (a Monday).
const NOW_NS: i64 = (FIXTURE_START_SECS + 2 * 3600) * 1_000_000_000;

async fn app(tasks: usize) -> TestApp {
    app_at(settings(), tasks, FederationConfig::default(), NOW_NS).await
}

impl Resp {
    fn html(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn page(app: &TestApp, cookie: &str, uri: &str) -> String {
    let r = app.call(Method::GET, uri, Auth::Cookie(cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.html());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{uri}"
    );
    r.html()
}

/// Posts a form with these fields (and the session cookie).
pub(crate) async fn post_form(
    app: &TestApp,
    uri: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> Resp {
    post_form_with(app, uri, cookie, fields, &[]).await
}

async fn post_form_with(
    app: &TestApp,
    uri: &str,
    cookie: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Resp {
    let body = serde_urlencoded::to_string(fields).expect("form");
    let mut b = request(Method::POST, uri, Auth::Cookie(cookie), ip(1))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    app.send(b.body(Body::from(body)).expect("request")).await
}

/// The text of the element carrying `data-figure="name"` inside the first `scope`.
fn figure(html: &str, scope: &str, name: &str) -> String {
    let from = html.find(scope).unwrap_or_else(|| panic!("no {scope}"));
    let rest = &html[from..];
    let marker = format!("data-figure=\"{name}\"");
    let at = rest.find(&marker).unwrap_or_else(|| panic!("no {marker}"));
    let after = &rest[at..];
    let start = after.find('>').expect("tag end") + 1;
    let end = after[start..].find('<').expect("text end");
    after[start..start + end].trim().to_owned()
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

fn thousands(n: u64) -> String {
    truebit_web::format::thousands(i64::try_from(n).expect("small"))
}

#[tokio::test]
async fn pages_need_a_login_session_and_send_anyone_else_to_the_login_page() {
    let app = app(5).await;
    for (uri, to) in [
        ("/", "/login"),
        (
            "/tasks?status=failed",
            "/login?next=%2Ftasks%3Fstatus%3Dfailed",
        ),
        ("/settings", "/login?next=%2Fsettings"),
    ] {
        for auth in [
            Auth::None,
            Auth::Bearer(KEY),
            Auth::Cookie("tbm_session=00ff"),
        ] {
            let r = app.call(Method::GET, uri, auth).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{uri} {auth:?}");
            assert_eq!(r.header("location"), Some(to), "{uri} {auth:?}");
        }
    }
    // Forms too: nothing changes without a session.
    let r = post_form(&app, "/settings/retention", "", &[("csrf_token", "x")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(app.store.retention().source, SettingSource::Config);
}

#[tokio::test]
async fn the_login_form_opens_a_session_and_returns_to_the_page_asked_for() {
    let app = app(5).await;
    let login = page_without_session(&app, "/login?next=%2Ftasks").await;
    assert!(login.contains(r#"name="next" value="/tasks""#), "{login}");

    let r = post_form(
        &app,
        "/login",
        "",
        &[("password", "wrong"), ("next", "/tasks")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.html().contains("Wrong password."));
    assert!(r.header("set-cookie").is_none());

    let r = post_form(
        &app,
        "/login",
        "",
        &[("password", PASSWORD), ("next", "/tasks")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/tasks"));
    let cookie = r
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    assert!(page(&app, &cookie, "/tasks")
        .await
        .contains("<h1>Tasks</h1>"));

    // Only local paths: anything else returns to the overview (a tab or newline that a
    // browser drops would make `//other.host`).
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil",
        "/\t/other.host/",
        "/\n/x",
        "/%09/other.host/",
    ] {
        let r = post_form(
            &app,
            "/login",
            "",
            &[("password", PASSWORD), ("next", next)],
        )
        .await;
        assert_eq!(r.header("location"), Some("/"), "{next:?}");
    }
    // A logged-in visit to /login goes on to the page, but never to another site: a tab
    // or newline that a browser drops would make `//other.host`.
    let r = app
        .call(Method::GET, "/login?next=/logs", Auth::Cookie(&cookie))
        .await;
    assert_eq!(r.header("location"), Some("/logs"));
    for next in [
        "/%09/other.host/",
        "/%0A/other.host/",
        "/%0D%0A/other.host/",
        "/%2509/other.host/",
        "%2F%2Fother.host",
        "/%5Cother.host",
    ] {
        let r = app
            .call(
                Method::GET,
                &format!("/login?next={next}"),
                Auth::Cookie(&cookie),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{next}");
        assert_eq!(r.header("location"), Some("/"), "{next}");
    }
}

#[tokio::test]
async fn every_stored_id_is_linked_percent_encoded_and_its_page_opens() {
    let app = app(0).await;
    import_odd_ids(&app);
    let (cookie, _) = app.login().await;
    // As the templates escape it (none of the ids has < > or quotes).
    let escape = |s: &str| s.replace('&', "&#38;");
    for list in ["/tasks", "/logs"] {
        let html = page(&app, &cookie, list).await;
        let links: Vec<&str> = html
            .split("href=\"/tasks/")
            .skip(1)
            .map(|rest| rest.split('"').next().expect("link"))
            .collect();
        assert_eq!(links.len(), ODD_IDS.len(), "{list}: {links:?}");
        for link in links {
            assert!(
                link.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"%-_.~".contains(&b)),
                "{list}: {link} is percent-encoded"
            );
            let task = page(&app, &cookie, &format!("/tasks/{link}")).await;
            let shown = ODD_IDS
                .iter()
                .filter(|id| task.contains(&escape(id)))
                .count();
            assert!(shown >= 1, "/tasks/{link} shows its id");
            // Its "Open in Logs" link encodes the id as a query value.
            assert!(
                task.contains(&format!("/logs?execution_id={link}\"")),
                "{link}"
            );
        }
    }
}

async fn page_without_session(app: &TestApp, uri: &str) -> String {
    let r = app.call(Method::GET, uri, Auth::None).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}");
    r.html()
}

#[tokio::test]
async fn the_overview_shows_the_figures_the_api_reports() {
    let app = app(30).await;
    let (cookie, _) = app.login().await;
    let html = page(&app, &cookie, "/").await;
    let e = &app.expected;
    let day_start = NOW_NS / 86_400_000_000_000 * 86_400;
    let stats = app
        .get_json(&format!(
            "/api/stats?from={day_start}&to={}",
            NOW_NS / 1_000_000_000
        ))
        .await;
    let api = |k: &str| stats["tasks"][k].as_u64().expect("count");
    // The fixture's tasks are all today (and this week).
    assert_eq!(api("completed"), e.tasks_completed);
    for period in ["data-period=\"today\"", "data-period=\"week\""] {
        assert_eq!(
            figure(&html, period, "completed"),
            thousands(e.tasks_completed)
        );
        assert_eq!(figure(&html, period, "failed"), thousands(e.tasks_failed));
        assert_eq!(figure(&html, period, "invoices"), thousands(e.invoices));
    }
    let rate = stats["success_rate"].as_f64().expect("rate");
    assert_eq!(
        figure(&html, "data-period=\"today\"", "success_rate"),
        truebit_web::format::percent(Some(rate))
    );
    // Health cards, charts with accessible names, the latest tasks.
    assert_eq!(figure(&html, "cards", "container"), "Simulated");
    assert_eq!(figure(&html, "cards", "version"), e.version);
    assert!(html.contains(r#"aria-label="Tasks per hour over the last 24 hours, by outcome""#));
    assert!(html.contains("Execution time of the last 24 hours"));
    assert!(html.contains("Container up (green), down (red)"));
    assert_eq!(count(&html, "<tr data-execution="), 10);
    // The health cards follow the node live, from the server's clock.
    assert!(html.contains(&format!(r#"data-live-overview data-now-ns="{NOW_NS}""#)));
    assert!(html.contains("/static/live.js?v="));
    // CSP: no inline script or style anywhere.
    assert!(!html.contains("style="), "inline style");
    assert_eq!(count(&html, "<script"), count(&html, "<script src="));
}

#[tokio::test]
async fn the_tasks_page_filters_like_the_api_and_links_each_task() {
    let app = app(30).await;
    let (cookie, _) = app.login().await;
    let failed = app.get_json("/api/tasks?status=failed&limit=200").await;
    let failed = failed["items"].as_array().expect("items").clone();
    assert_eq!(failed.len() as u64, app.expected.tasks_failed);
    assert!(!failed.is_empty(), "the fixture has failed tasks");

    let html = page(&app, &cookie, "/tasks?status=failed&chain=&from=&to=").await;
    assert_eq!(count(&html, "<tr data-execution="), failed.len());
    for t in &failed {
        let id = t["execution_id"].as_str().expect("id");
        assert!(html.contains(&format!(r#"href="/tasks/{id}""#)), "{id}");
    }
    assert!(html.contains(r#"<option value="failed" selected>"#));
    assert_eq!(count(&html, "badge ok\">completed"), 0);

    // All tasks, 50 per page, then the rest on the next page.
    let all = page(&app, &cookie, "/tasks").await;
    assert_eq!(count(&all, "<tr data-execution="), 30);
    // A wrong filter is explained, not an error page.
    let bad = page(&app, &cookie, "/tasks?status=lost").await;
    assert!(bad.contains("invalid parameter status"), "{bad}");
    assert_eq!(count(&bad, "<tr data-execution="), 30);
}

#[tokio::test]
async fn a_task_page_shows_its_timeline_metrics_invoices_and_data() {
    let app = app(30).await;
    let (cookie, _) = app.login().await;
    let list = app.get_json("/api/tasks?status=completed&limit=1").await;
    let id = list["items"][0]["execution_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let api = app.get_json(&format!("/api/tasks/{id}")).await;
    let html = page(&app, &cookie, &format!("/tasks/{id}")).await;
    assert!(html.contains(&format!(r#"<span class="mono" id="task-id">{id}</span>"#)));
    assert!(html.contains(r#"id="task-status">completed</span>"#));
    for step in ["Received", "Started", "Completed"] {
        assert!(html.contains(&format!("<strong>{step}</strong>")), "{step}");
    }
    let gas = api["task"]["gas_used"].as_u64().expect("gas");
    assert!(html.contains(&thousands(gas)), "gas {gas}");
    assert!(html.contains("Execution time"));
    let invoices = api["invoices"].as_array().expect("invoices").len();
    assert_eq!(count(&html, "<h3>Invoice "), invoices);
    let entries = api["entries"].as_array().expect("entries").len();
    assert_eq!(count(&html, "<tr data-id="), entries);
    if let Some(input) = api["task"]["input"].as_str() {
        // As askama escapes it.
        let escaped: String = input
            .chars()
            .take(60)
            .map(|c| match c {
                '&' => "&amp;".to_owned(),
                '<' => "&#60;".to_owned(),
                '>' => "&#62;".to_owned(),
                '"' => "&#34;".to_owned(),
                '\'' => "&#39;".to_owned(),
                c => c.to_string(),
            })
            .collect();
        assert!(html.contains(&escaped), "input shown: {escaped}");
    }

    let missing = app
        .call(Method::GET, "/tasks/no-such-task", Auth::Cookie(&cookie))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.html().contains("task not found"));
}

#[tokio::test]
async fn the_invoices_page_lists_invoices_and_the_api_totals() {
    let app = app(30).await;
    let (cookie, _) = app.login().await;
    let html = page(&app, &cookie, "/invoices").await;
    assert_eq!(
        count(&html, "<tr data-invoice="),
        app.expected.invoices as usize
    );
    let earnings = app
        .get_json(&format!("/api/earnings?to={}", NOW_NS / 1_000_000_000))
        .await;
    let earned: f64 = earnings["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["earned"].as_f64().expect("earned"))
        .sum();
    assert!(earned > 0.0);
    assert_eq!(
        figure(&html, "cards", "earned_30d"),
        format!("{} gas", truebit_web::format::compact(earned))
    );
    let exact = truebit_web::format::thousands(earned.round() as i64);
    assert!(
        html.contains(&format!("{exact} gas units (pay items)")),
        "{exact}"
    );
    assert_eq!(
        figure(&html, "cards", "invoices_30d"),
        thousands(app.expected.invoices)
    );
    assert!(html.contains("Earnings per UTC day over the last 30 days"));
    assert!(html.contains("badge ok\">pay</span>"));
}

#[tokio::test]
async fn the_logs_page_filters_and_only_its_first_page_is_live() {
    let app = app(30).await;
    let (cookie, _) = app.login().await;
    let api = app.get_json("/api/logs?kind=invoice&limit=200").await;
    let invoices = api["items"].as_array().expect("items").len();
    let html = page(&app, &cookie, "/logs?level=&kind=invoice&q=").await;
    assert!(html.contains(r#"data-live="true""#));
    assert!(html.contains(r#"data-kind="invoice""#));
    assert_eq!(count(&html, "<tr data-id="), invoices);
    assert!(html.contains("/static/live.js?v="));

    let first = page(&app, &cookie, "/logs").await;
    assert_eq!(count(&first, "<tr data-id="), 100);
    let next = first
        .split("rel=\"next\"")
        .next()
        .and_then(|s| s.rsplit("href=\"").next())
        .map(|s| s.trim_end_matches("\" ").replace("&amp;", "&"))
        .expect("an older page");
    let older = page(&app, &cookie, &next).await;
    assert!(older.contains(r#"data-live="false""#), "{next}");
    assert!(older.contains("« Newest"));
    assert!(!older.contains("/static/live.js"));
}

#[tokio::test]
async fn forms_need_the_sessions_csrf_token_and_this_site() {
    let app = app(0).await;
    let (cookie, csrf) = app.login().await;
    let fields = |token: &'static str| {
        [
            ("csrf_token", token),
            ("log_retention_days", "7"),
            ("task_retention_days", "0"),
        ]
    };
    let r = post_form(&app, "/settings/retention", &cookie, &fields("wrong")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.html().contains("reload the page"));
    let r = post_form(
        &app,
        "/settings/retention",
        &cookie,
        &[("log_retention_days", "7"), ("task_retention_days", "0")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let body: Vec<(&str, &str)> = vec![
        ("csrf_token", csrf.as_str()),
        ("log_retention_days", "7"),
        ("task_retention_days", "0"),
    ];
    let r = post_form_with(
        &app,
        "/settings/retention",
        &cookie,
        &body,
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post_form_with(
        &app,
        "/settings/retention",
        &cookie,
        &body,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(app.store.retention().source, SettingSource::Config);
    // A browser's own form post (Origin: null by its referrer policy) is accepted.
    let r = post_form_with(
        &app,
        "/settings/retention",
        &cookie,
        &body,
        &[("sec-fetch-site", "same-origin"), ("origin", "null")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html());
    assert_eq!(app.store.retention().log_days, Some(7));
}

#[tokio::test]
async fn an_api_key_is_shown_once_works_and_can_be_revoked() {
    let app = app(0).await;
    let (cookie, csrf) = app.login().await;
    let create = [
        ("csrf_token", csrf.as_str()),
        ("name", "grafana"),
        ("scope", "read"),
    ];
    // POST/redirect/GET: the key is shown on the page the creation redirects to, once.
    let r = post_form(&app, "/settings/keys", &cookie, &create).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html());
    assert_eq!(r.header("location"), Some("/settings?m=key"));
    let shown = app
        .call(Method::GET, "/settings?m=key", Auth::Cookie(&cookie))
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.header("cache-control"), Some("no-store"));
    let html = shown.html();
    let key = html
        .split(r#"id="new-key">"#)
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the key")
        .to_owned();
    assert!(key.starts_with("tbm_"), "{key}");
    assert_eq!(
        app.call(Method::GET, "/api/status", Auth::Bearer(&key))
            .await
            .status,
        StatusCode::OK
    );
    // Read-only: it cannot change anything.
    let settings = page(&app, &cookie, "/settings").await;
    assert!(!settings.contains(&key), "shown only once");
    // A reload of the page that showed it: not shown again, and no second key.
    let reload = page(&app, &cookie, "/settings?m=key").await;
    assert!(!reload.contains(&key), "shown only once");
    assert!(reload.contains("shown once and not kept"), "{reload}");
    assert_eq!(
        app.get_json("/api/keys").await["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(settings.contains(">grafana</td>"));
    let id = app.get_json("/api/keys").await["items"][0]["id"]
        .as_i64()
        .expect("id");

    let dup = post_form(&app, "/settings/keys", &cookie, &create).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(dup.html().contains("already named"));

    let revoke = format!("/settings/keys/{id}/revoke");
    let r = post_form(&app, &revoke, &cookie, &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/settings?m=revoked"));
    assert_eq!(
        app.call(Method::GET, "/api/status", Auth::Bearer(&key))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let again = post_form(&app, &revoke, &cookie, &[("csrf_token", &csrf)]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    // The password must live in the database (not the configuration) to be changed.
    let mut s = settings();
    s.task_data_password = None;
    let app = app_at(s, 0, FederationConfig::default(), NOW_NS).await;
    let first = truebit_monitor::http::auth::hash_password("first password 12").expect("hash");
    app.store.replace_password_hash(first, NOW_NS).expect("set");
    let login = |pw: &'static str| {
        let app = &app;
        async move {
            let r = post_form(app, "/login", "", &[("password", pw)]).await;
            r.header("set-cookie")
                .map(|c| c.split(';').next().expect("pair").to_owned())
        }
    };
    let a = login("first password 12").await.expect("session a");
    let b = login("first password 12").await.expect("session b");
    let csrf_a = page(&app, &a, "/settings").await;
    let csrf_a = csrf_a
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf")
        .to_owned();
    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        let (app, a, csrf) = (&app, a.clone(), csrf_a.clone());
        async move {
            post_form(
                app,
                "/settings/password",
                &a,
                &[
                    ("csrf_token", &csrf),
                    ("current", current),
                    ("new", new),
                    ("confirm", confirm),
                ],
            )
            .await
        }
    };
    let r = change("wrong", "second password 34", "second password 34").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.html().contains("The current password is wrong."));
    let r = change(
        "first password 12",
        "second password 34",
        "second password 35",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.html().contains("differ"));
    let r = change("first password 12", "short", "short").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.html().contains("at least 8 characters"));

    let r = change(
        "first password 12",
        "second password 34",
        "second password 34",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html());
    let renewed = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a new session for this browser")
        .to_owned();
    assert!(page(&app, &renewed, "/settings?m=password")
        .await
        .contains("Password changed."));
    for old in [&a, &b] {
        let r = app.call(Method::GET, "/", Auth::Cookie(old)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "old sessions end");
    }
    assert!(login("first password 12").await.is_none());
    assert!(login("second password 34").await.is_some());
}

#[tokio::test]
async fn retention_set_on_the_settings_page_applies_and_survives_a_restart() {
    let app = app(0).await;
    let (cookie, csrf) = app.login().await;
    let before = page(&app, &cookie, "/settings").await;
    // The tests' store keeps everything by default (0: forever).
    assert!(before.contains("from the configuration"));
    assert!(
        before.contains(r#"name="log_retention_days" type="number" min="0" max="3650" value="0""#)
    );
    let retention = |log: &'static str, task: &'static str| {
        [
            ("csrf_token", csrf.as_str()),
            ("log_retention_days", log),
            ("task_retention_days", task),
        ]
    };
    let r = post_form(&app, "/settings/retention", &cookie, &retention("abc", "0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r
        .html()
        .contains("log_retention_days must be a whole number of days"));

    let r = post_form(&app, "/settings/retention", &cookie, &retention("7", "90")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let retention = app.store.retention();
    assert_eq!(
        (retention.log_days, retention.task_days),
        (Some(7), Some(90))
    );
    assert_eq!(retention.source, SettingSource::Database);
    let after = page(&app, &cookie, "/settings?m=retention").await;
    assert!(after.contains(r#"value="7""#) && after.contains(r#"value="90""#));
    assert!(after.contains("set here (wins over the configuration)"));

    // A new process on the same database keeps the operator's choice.
    let path = app.store.path().to_owned();
    app.store.close().expect("close");
    let reopened = support::open_store(&path);
    let r = reopened.retention();
    assert_eq!(
        (r.log_days, r.task_days, r.source),
        (Some(7), Some(90), SettingSource::Database)
    );
}

#[tokio::test]
async fn the_federation_page_explains_and_cannot_turn_on_without_a_server() {
    let app = app(0).await;
    let (cookie, csrf) = app.login().await;
    let html = page(&app, &cookie, "/federation").await;
    assert!(html.contains("What is never sent"));
    assert!(html.contains("Wallet or contract addresses"));
    // What a report contains is what the protocol's report holds: items carry no
    // identifier (protocol::report::TaskItem, InvoiceItem), not even a pseudonym.
    assert!(html.contains("No identifier of the task."), "{html}");
    assert!(html.contains("No identifier of the invoice."), "{html}");
    assert!(!html.contains("pseudonym (the salt"), "{html}");
    assert!(html.contains(r#"id="federation-state">off</span>"#));
    assert!(html.contains("No federation server is configured"));
    assert!(html.contains(r#"id="federation-toggle" disabled"#));
    assert!(html.contains("No reports yet. Nothing is sent while federation is off."));
    // No uptime proof while federation is off.
    assert!(!html.contains("proof-form"), "{html}");
    let r = post_form(
        &app,
        "/federation/enable",
        &cookie,
        &[("csrf_token", &csrf)],
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(r.html().contains("FEDERATION_NATS_URL"));
    let status: Value = app.get_json("/api/federation/status").await;
    assert_eq!(status["settings"]["enabled"], false);
}

#[tokio::test]
async fn every_page_says_what_to_expect_when_there_is_no_data_yet() {
    let app = app(0).await;
    let (cookie, _) = app.login().await;
    for (uri, says) in [
        ("/", "No log lines from the node yet"),
        ("/tasks", "No tasks yet"),
        ("/invoices", "No invoices yet"),
        ("/logs", "No matching entries yet"),
        ("/settings", "No API keys yet."),
    ] {
        assert!(page(&app, &cookie, uri).await.contains(says), "{uri}");
    }
    let html = page(&app, &cookie, "/").await;
    assert!(html.contains("No tasks in the last 24 hours"));
    // The empty overview names what it follows.
    app.status.send_replace(SourceStatus {
        kind: "docker",
        connection: Connection::Connecting,
        container: ContainerState::Missing {
            name: "my-node-7".into(),
        },
        last_error: None,
    });
    let html = page(&app, &cookie, "/").await;
    assert!(
        html.contains("the container &#34;my-node-7&#34; (CONTAINER_NAME)"),
        "{html}"
    );
    // The login page says where the printed password is.
    let login = page_without_session(&app, "/login").await;
    assert!(login.contains("docker compose logs monitor"), "{login}");
    assert!(login.contains("journalctl -u truebit-monitor"), "{login}");
}

#[tokio::test]
async fn docker_trouble_is_a_notice_on_every_page() {
    let app = app(5).await;
    let (cookie, _) = app.login().await;
    app.status.send_replace(SourceStatus {
        kind: "docker",
        connection: Connection::Unreachable {
            reason: "cannot connect to /var/run/docker.sock".into(),
        },
        container: ContainerState::Missing {
            name: "runner-node".into(),
        },
        last_error: None,
    });
    for uri in [
        "/",
        "/tasks",
        "/invoices",
        "/logs",
        "/federation",
        "/settings",
    ] {
        let html = page(&app, &cookie, uri).await;
        assert!(
            html.contains("Docker is unreachable (cannot connect to /var/run/docker.sock)"),
            "{uri}"
        );
        assert!(
            html.contains("No container named &#34;runner-node&#34; exists")
                || html.contains("No container named &quot;runner-node&quot; exists"),
            "{uri}"
        );
    }
    let html = page(&app, &cookie, "/").await;
    assert_eq!(figure(&html, "cards", "docker"), "Unreachable");
    assert_eq!(figure(&html, "cards", "container"), "Not found");
}

#[tokio::test]
async fn static_files_are_versioned_and_unknown_pages_get_an_html_answer() {
    let app = app(0).await;
    let css = truebit_web::asset::get("app.css").expect("css");
    let r = app.call(Method::GET, &css.url(), Auth::None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.body, css.bytes);
    let r = app.call(Method::GET, "/static/app.css", Auth::None).await;
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(
        app.call(Method::GET, "/static/nope.js", Auth::None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let html = app
        .send(
            request(Method::GET, "/no/such/page", Auth::None, ip(1))
                .header(header::ACCEPT, "text/html,application/xhtml+xml")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(html.status, StatusCode::NOT_FOUND);
    assert!(html.html().contains("<h1>Not found</h1>"));
    let json = app.call(Method::GET, "/no/such/page", Auth::None).await;
    assert_eq!(json.status, StatusCode::NOT_FOUND);
    assert_eq!(json.json()["error"], "no_route");
}

/// `text` as askama escapes it in HTML.
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&#60;".to_owned(),
            '>' => "&#62;".to_owned(),
            '"' => "&#34;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn a_failed_tasks_reason_is_on_its_page_in_the_tasks_list_and_in_recent_failures() {
    let app = app(60).await;
    let (cookie, _) = app.login().await;
    let failed = app.get_json("/api/tasks?status=failed&limit=200").await;
    let failed = failed["items"].as_array().expect("items").clone();
    assert_eq!(failed.len() as u64, app.expected.tasks_failed);
    assert!(failed.len() >= 3, "the fixture has failed tasks");
    let mut by_reason: Vec<(String, usize)> = Vec::new();
    for t in &failed {
        let reason = t["error"]
            .as_str()
            .expect("every failed demo task has a reason");
        match by_reason.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => by_reason.push((reason.to_owned(), 1)),
        }
    }
    // The task's page.
    let id = failed[0]["execution_id"].as_str().expect("id");
    let reason = failed[0]["error"].as_str().expect("reason");
    let html = page(&app, &cookie, &format!("/tasks/{id}")).await;
    assert!(
        html.contains(&format!(
            r#"<p class="mono" id="task-error">{}</p>"#,
            escaped(reason)
        )),
        "{html}"
    );
    let completed = app.get_json("/api/tasks?status=completed&limit=1").await;
    let ok_id = completed["items"][0]["execution_id"].as_str().expect("id");
    let ok_html = page(&app, &cookie, &format!("/tasks/{ok_id}")).await;
    assert!(
        !ok_html.contains("task-error"),
        "a completed task has no reason"
    );
    // The list: a column, cut, with the full reason on hover.
    let list = page(&app, &cookie, "/tasks?status=failed").await;
    assert!(list.contains("<th>Failure reason</th>"));
    for t in &failed {
        let full = t["error"].as_str().expect("reason");
        let shown = truebit_web::format::clip(full, truebit_web::page::TaskRow::REASON_CHARS);
        assert!(
            list.contains(&format!(
                r#"<td class="node reason" title="{}">{}</td>"#,
                escaped(full),
                escaped(&shown)
            )),
            "{full}"
        );
    }
    // The overview: failures of the last 24 hours by reason, with counts.
    let overview = page(&app, &cookie, "/").await;
    let panel = &overview[overview.find(r#"id="failures""#).expect("failures panel")..];
    let panel = &panel[..panel.find("</section>").expect("panel end")];
    assert_eq!(
        count(panel, "<tr><td class=\"node reason\""),
        by_reason.len()
    );
    for (reason, n) in &by_reason {
        let shown = truebit_web::format::clip(reason, truebit_web::page::TaskRow::REASON_CHARS);
        let row = format!(
            r#"<tr><td class="node reason" title="{}">{}</td><td class="num"><a href="/tasks?status=failed">{n}</a></td></tr>"#,
            escaped(reason),
            escaped(&shown)
        );
        assert!(panel.contains(&row), "{row}\n{panel}");
    }
    assert_eq!(
        figure(panel, "failure-table", "failures_total"),
        thousands(app.expected.tasks_failed)
    );
}

#[tokio::test]
async fn penalties_are_split_into_the_nodes_own_and_other_accounts_on_the_page_and_the_api() {
    let app = app(0).await;
    let own = "0x558f4b6bd6e2a6e1b5a0c1c2d3e4f5a6b7c8c5d7";
    let other = "0x00000000000000000000000000000000000000aa";
    let h = |s: u32| format!("2025-11-24 15:00:{s:02} info: @truebit/worker-runner-node:2.4.1 ");
    let invoice = |n: u32, items: &str| {
        format!(
            r#"{}InvoiceSubscriber invoice received: {{"invoiceId":{n},"executionId":"e{n}","taskId":"t{n}","stepGasPrice":"2","byteGasPrice":"1","lineItem":[{items}]}}"#,
            h(n + 1)
        )
    };
    let item = |op: &str, account: &str, steps: u32| {
        format!(
            r#"{{"operation":"{op}","account":"{account}","total_steps_computed":"{steps}","peak_memory_used":"10"}}"#
        )
    };
    let text = [
        // The node prints its address checksummed; line items may not.
        format!(
            "{}Node with address {} registered successfully",
            h(0),
            own.to_uppercase().replacen("0X", "0x", 1)
        ),
        invoice(
            1,
            &[item("pay", own, 100), item("penalty", own, 50)].join(","),
        ),
        invoice(
            2,
            &[item("pay", own, 100), item("penalty", other, 20)].join(","),
        ),
        invoice(3, &item("penalty", other, 5)),
    ]
    .join("\n")
        + "\n";
    crate::http::import_lines(&app, "penalties.log", &text);
    // value = steps × 2 + memory (10) × 1
    let api = app
        .get_json(&format!(
            "/api/earnings?from={}&to={}",
            FIXTURE_START_SECS - 86_400,
            NOW_NS / 1_000_000_000
        ))
        .await;
    let p = &api["penalties"];
    assert_eq!(p["own"], serde_json::json!({ "items": 1, "value": 110.0 }));
    assert_eq!(
        p["others"],
        serde_json::json!({ "items": 2, "value": 70.0 })
    );
    assert_eq!(
        p["by_account"],
        serde_json::json!([
            { "account": own, "own": true, "items": 1, "value": 110.0 },
            { "account": other, "own": false, "items": 2, "value": 70.0 },
        ])
    );
    let (cookie, _) = app.login().await;
    let html = page(&app, &cookie, "/invoices").await;
    assert_eq!(figure(&html, "cards", "penalties_own_30d"), "110 gas");
    assert_eq!(figure(&html, "cards", "penalties_others_30d"), "70 gas");
    assert!(
        html.contains("(1 penalty items charged to this node&#39;s address)"),
        "{html}"
    );
    assert!(html.contains("(2 penalty items charged to other nodes)"));
    assert_eq!(count(&html, r#"<tr data-own="true">"#), 1);
    assert_eq!(count(&html, r#"<tr data-own="false">"#), 1);
    assert!(html.contains(&format!(r#"title="{own}""#)));
}
