//! The downloads (`/api/export/...`): every record the lists hold, in both formats,
//! across several pieces of the streamed body, with the lists' access rules.

use axum::http::Method;
use serde_json::Value;
use truebit_monitor::http::api::export::{
    EXPORT_PAGE, INVOICE_CSV_COLUMNS, LINE_ITEM_CSV_COLUMNS, TASK_CSV_COLUMNS,
};

use crate::http::{app_with, settings, Auth, TestApp, KEY};

/// Every item of a paged list route, following `next_cursor`.
async fn all_items(app: &TestApp, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let uri = match &cursor {
            Some(c) => format!("{path}{sep}limit=500&cursor={c}"),
            None => format!("{path}{sep}limit=500"),
        };
        let page = app.get_json(&uri).await;
        items.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

fn csv_records(body: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(body);
    let header = reader
        .headers()
        .expect("a header row")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.expect("a CSV record").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

fn json_lines(body: &[u8]) -> Vec<Value> {
    std::str::from_utf8(body)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// The CSV cell of a JSON value as the export writes it.
fn as_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn tasks_download_whole_in_both_formats_across_pieces_as_the_list_has_them() {
    // More tasks than one piece of the body holds.
    let app = app_with(settings(), EXPORT_PAGE + 137).await;
    let listed = all_items(&app, "/api/tasks").await;
    assert!(listed.len() > EXPORT_PAGE, "{} tasks", listed.len());

    let r = app
        .call(
            Method::GET,
            "/api/export/tasks?format=jsonl",
            Auth::Bearer(KEY),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let disposition = r.header("content-disposition").expect("a file");
    assert!(
        disposition.starts_with("attachment; filename=\"truebit-tasks-")
            && disposition.ends_with(".jsonl\""),
        "{disposition}"
    );
    assert_eq!(json_lines(&r.body), listed, "the list, in its order");

    let r = app
        .call(Method::GET, "/api/export/tasks", Auth::Bearer(KEY))
        .await;
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let (header, rows) = csv_records(&r.body);
    assert_eq!(header, TASK_CSV_COLUMNS);
    assert_eq!(rows.len(), listed.len());
    for (row, item) in rows.iter().zip(&listed) {
        for (column, cell) in TASK_CSV_COLUMNS.iter().zip(row) {
            assert_eq!(*cell, as_cell(&item[*column]), "{column} of {item}");
        }
    }

    // A filter selects as in the list.
    let failed = all_items(&app, "/api/tasks?status=failed").await;
    assert!(!failed.is_empty());
    let r = app
        .call(
            Method::GET,
            "/api/export/tasks?status=failed&format=jsonl",
            Auth::Bearer(KEY),
        )
        .await;
    assert_eq!(json_lines(&r.body), failed);
}

/// The CSV columns are every field the document gives a listed task, invoice and line
/// item: a field added to one of them fails here until the export has it.
#[tokio::test]
async fn the_csv_columns_are_the_documented_fields() {
    let app = app_with(settings(), 0).await;
    let doc = app.get_json("/api/openapi.json").await;
    let fields = |schema: &str, without: &[&str]| {
        let mut names: Vec<String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema}"))
            .keys()
            .filter(|k| !without.contains(&k.as_str()))
            .cloned()
            .collect();
        names.sort();
        names
    };
    let sorted = |columns: &[&str]| {
        let mut c: Vec<String> = columns.iter().map(|s| (*s).to_owned()).collect();
        c.sort();
        c
    };
    assert_eq!(
        sorted(TASK_CSV_COLUMNS),
        fields("Task", &["input", "output"])
    );
    assert_eq!(
        sorted(INVOICE_CSV_COLUMNS),
        fields("Invoice", &["line_items"])
    );
    assert_eq!(sorted(LINE_ITEM_CSV_COLUMNS), fields("LineItem", &[]));
}

#[tokio::test]
async fn invoices_download_with_one_csv_row_per_line_item_and_earnings_as_the_api_sums_them() {
    let app = app_with(settings(), 60).await;
    let listed = all_items(&app, "/api/invoices").await;
    assert!(!listed.is_empty());
    let r = app
        .call(
            Method::GET,
            "/api/export/invoices?format=jsonl",
            Auth::Bearer(KEY),
        )
        .await;
    assert_eq!(json_lines(&r.body), listed);
    let r = app
        .call(Method::GET, "/api/export/invoices", Auth::Bearer(KEY))
        .await;
    let (header, rows) = csv_records(&r.body);
    assert_eq!(
        header,
        [INVOICE_CSV_COLUMNS, LINE_ITEM_CSV_COLUMNS].concat()
    );
    let items: usize = listed
        .iter()
        .map(|i| i["line_items"].as_array().expect("items").len().max(1))
        .sum();
    assert_eq!(rows.len(), items);
    // The first invoice's first line item, cell by cell.
    let first = &listed[0];
    let item = &first["line_items"][0];
    let expected: Vec<String> = INVOICE_CSV_COLUMNS
        .iter()
        .map(|c| as_cell(&first[*c]))
        .chain(LINE_ITEM_CSV_COLUMNS.iter().map(|c| as_cell(&item[*c])))
        .collect();
    assert_eq!(rows[0], expected);

    // Earnings: the days of GET /api/earnings, and CSV rows whose values add up to them.
    let start = truebit_monitor::demo::FIXTURE_START_SECS;
    let range = format!("from={}&to={}", start - 86_400, start + 300 * 86_400);
    let api = app.get_json(&format!("/api/earnings?{range}")).await;
    let r = app
        .call(
            Method::GET,
            &format!("/api/export/earnings?{range}&format=jsonl"),
            Auth::Bearer(KEY),
        )
        .await;
    assert_eq!(json_lines(&r.body), *api["days"].as_array().expect("days"));
    let r = app
        .call(
            Method::GET,
            &format!("/api/export/earnings?{range}"),
            Auth::Bearer(KEY),
        )
        .await;
    let (header, rows) = csv_records(&r.body);
    assert_eq!(
        header[..4],
        ["date", "invoices", "earned_gas_units", "operation"]
    );
    let pay: f64 = rows
        .iter()
        .filter(|r| r[3] == "pay")
        .map(|r| r[7].parse::<f64>().expect("value"))
        .sum();
    let earned: f64 = api["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["earned"].as_f64().expect("earned"))
        .sum();
    assert!(earned > 0.0, "{api}");
    assert!((pay - earned).abs() < 1e-6 * earned, "{pay} vs {earned}");
}

#[tokio::test]
async fn the_log_downloads_oldest_first_as_printed_and_bad_parameters_are_named() {
    let app = app_with(settings(), 20).await;
    let r = app
        .call(Method::GET, "/api/export/logs?from=0", Auth::Bearer(KEY))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let text = String::from_utf8(r.body).expect("UTF-8");
    let entries = all_items(&app, "/api/logs").await;
    // Newest first in the list, oldest first in the file; one entry may span lines.
    let mut stamps: Vec<&str> = text
        .lines()
        .filter(|l| l.len() > 19 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b' ')
        .map(|l| &l[..19])
        .collect();
    let printed = stamps.len();
    assert!(printed > 0);
    let in_order = stamps.windows(2).all(|w| w[0] <= w[1]);
    assert!(in_order, "oldest first");
    stamps.dedup();
    // The oldest entry is the file's first line: its message, after the node's parts.
    let first = entries.last().expect("entries");
    let head = text.lines().next().expect("a line");
    let message = first["message"].as_str().expect("message");
    assert!(
        head.ends_with(message.lines().next().unwrap_or("")),
        "{head} vs {first}"
    );
    if let Some(level) = first["level"].as_str() {
        assert!(head.contains(&format!(" {level}: ")), "{head}");
    }
    let messages: usize = entries
        .iter()
        .map(|e| {
            e["message"]
                .as_str()
                .expect("message")
                .lines()
                .count()
                .max(1)
        })
        .sum();
    assert_eq!(text.lines().count(), messages, "every entry, every line");

    for (uri, parameter) in [
        ("/api/export/tasks?format=xml", "format"),
        ("/api/export/tasks?limit=5", "limit"),
        (
            "/api/export/logs?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
            "from",
        ),
        (
            "/api/export/earnings?from=2020-01-01T00:00:00Z&to=2023-01-01T00:00:00Z",
            "from",
        ),
    ] {
        let r = app.call(Method::GET, uri, Auth::Bearer(KEY)).await;
        assert_eq!(r.status, 400, "{uri}");
        assert_eq!(r.json()["parameter"], parameter, "{uri}");
    }
    let r = app.call(Method::GET, "/api/export/tasks", Auth::None).await;
    assert_eq!(r.status, 401);
}

/// The list pages link their downloads, with the page's filters, and the operator's
/// session is enough to follow them.
#[tokio::test]
async fn the_pages_link_their_downloads_with_their_filters() {
    let app = app_with(settings(), 40).await;
    let (cookie, _) = app.login().await;
    let page = app
        .call(
            Method::GET,
            "/tasks?status=failed&chain=43113",
            Auth::Cookie(&cookie),
        )
        .await;
    let html = String::from_utf8(page.body).expect("UTF-8");
    // Askama writes `&` in an attribute as `&#38;`.
    let href = "/api/export/tasks?status=failed&#38;chain=43113";
    assert!(html.contains(&format!("href=\"{href}\"")), "{html}");
    assert!(
        html.contains("href=\"/api/export/tasks?format=jsonl&status=failed&#38;chain=43113\""),
        "{html}"
    );
    let r = app
        .call(
            Method::GET,
            &href.replace("&#38;", "&"),
            Auth::Cookie(&cookie),
        )
        .await;
    assert_eq!(r.status, 200);
    let (_, rows) = csv_records(&r.body);
    let listed = all_items(&app, "/api/tasks?status=failed&chain=43113").await;
    assert_eq!(rows.len(), listed.len());
    for (path, link) in [
        ("/invoices", "/api/export/invoices"),
        ("/invoices", "/api/export/earnings"),
        ("/logs", "/api/export/logs"),
    ] {
        let page = app.call(Method::GET, path, Auth::Cookie(&cookie)).await;
        let html = String::from_utf8(page.body).expect("UTF-8");
        assert!(html.contains(&format!("href=\"{link}\"")), "{path}: {link}");
        let r = app.call(Method::GET, link, Auth::Cookie(&cookie)).await;
        assert_eq!(r.status, 200, "{link}");
    }
}
