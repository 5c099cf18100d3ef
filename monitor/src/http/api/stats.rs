//! `GET /api/stats`: task counts, success rate, tasks per hour, distributions, cache hit
//! rate.

use axum::extract::State;
use axum::http::Uri;
use serde::Serialize;

use super::{ok, summary_range, ApiResult, RANGE_QUERY};
use crate::http::figures::{Counts, ELAPSED_BUCKETS, GAS_BUCKETS, NS_PER_HOUR};
use crate::http::filters::ceil_div;
use crate::http::params::Params;
use crate::http::AppState;
use crate::store::query::TaskStats;

/// `GET /api/stats`: task counts, success rate, tasks per hour (per day beyond 7 days),
/// execution-time and gas distributions, cache hit rate; default: the last 24 hours.
/// Figures come from whole UTC hours: `from` is rounded down and `to` up to the hour.
pub async fn stats(State(s): State<AppState>, uri: Uri) -> ApiResult {
    let p = Params::parse(&uri, RANGE_QUERY)?;
    let (from, to) = summary_range(&p, s.clock.now_ns(), 24 * NS_PER_HOUR)?;
    let (from_hour, to_hour) = (from.div_euclid(NS_PER_HOUR), ceil_div(to, NS_PER_HOUR));
    let (first, step) = series_steps(from_hour, to_hour);
    let stats = s
        .store
        .call(move |st| st.task_stats(from_hour, to_hour, first, step))
        .await?;
    ok(stats_json(&stats, from_hour, to_hour))
}

/// The series' first hour and step: hourly up to 7 days, else per UTC day.
fn series_steps(from_hour: i64, to_hour: i64) -> (i64, i64) {
    if to_hour - from_hour <= 7 * 24 {
        (from_hour, 1)
    } else {
        (from_hour.div_euclid(24) * 24, 24)
    }
}

/// The answer of `GET /api/stats` (schema `Stats`).
#[derive(Serialize)]
struct Stats {
    from_ns: i64,
    to_ns: i64,
    success_rate: Option<f64>,
    tasks: Counts,
    /// `hour` or `day`.
    interval: &'static str,
    interval_ns: i64,
    series: Vec<Point>,
    execution_time_ms: Distribution,
    gas_used: Distribution,
    cache: Cache,
}

/// Tasks that started in one interval of the series.
#[derive(Serialize)]
struct Point {
    start_ns: i64,
    total: i64,
    completed: i64,
    failed: i64,
}

#[derive(Serialize)]
struct Distribution {
    count: i64,
    mean: Option<f64>,
    buckets: Vec<BucketCount>,
}

#[derive(Serialize)]
struct BucketCount {
    bucket: &'static str,
    count: i64,
}

#[derive(Serialize)]
struct Cache {
    hits: i64,
    known: i64,
    hit_rate: Option<f64>,
}

fn stats_json(stats: &TaskStats, from_hour: i64, to_hour: i64) -> Stats {
    let (first, step) = series_steps(from_hour, to_hour);
    let hourly = step == 1;
    let points = usize::try_from((to_hour - first + step - 1) / step).unwrap_or(0);
    let mut series: Vec<Counts> = (0..points).map(|_| Counts::default()).collect();
    for (hour, status, n) in &stats.series {
        if let Some(slot) = usize::try_from((hour - first) / step)
            .ok()
            .and_then(|i| series.get_mut(i))
        {
            slot.add(*status, *n);
        }
    }
    let mut counts = Counts::default();
    let (mut elapsed, mut gas) = ([0_i64; ELAPSED_BUCKETS.len()], [0_i64; GAS_BUCKETS.len()]);
    let (mut elapsed_n, mut elapsed_sum, mut gas_n, mut gas_sum) = (0, 0, 0, 0);
    let (mut cached, mut cache_known) = (0, 0);
    for r in &stats.totals {
        counts.add(r.status, r.tasks);
        for (a, b) in elapsed.iter_mut().zip(r.elapsed) {
            *a += b;
        }
        for (a, b) in gas.iter_mut().zip(r.gas) {
            *a += b;
        }
        elapsed_n += r.elapsed_n;
        elapsed_sum += r.elapsed_ms_sum;
        gas_n += r.gas_n;
        gas_sum += r.gas_sum;
        cached += r.cached;
        cache_known += r.cache_known;
    }
    let distribution = |labels: &[&'static str], counts: &[i64], n: i64, sum: i64| Distribution {
        count: n,
        mean: (n > 0).then(|| sum as f64 / n as f64),
        buckets: labels
            .iter()
            .zip(counts)
            .map(|(bucket, count)| BucketCount {
                bucket,
                count: *count,
            })
            .collect(),
    };
    let series = series
        .into_iter()
        .enumerate()
        .map(|(i, c)| Point {
            start_ns: (first + i as i64 * step) * NS_PER_HOUR,
            total: c.total,
            completed: c.completed,
            failed: c.failed,
        })
        .collect();
    Stats {
        from_ns: from_hour * NS_PER_HOUR,
        to_ns: to_hour * NS_PER_HOUR,
        success_rate: counts.success_rate(),
        tasks: counts,
        interval: if hourly { "hour" } else { "day" },
        interval_ns: step * NS_PER_HOUR,
        series,
        execution_time_ms: distribution(&ELAPSED_BUCKETS, &elapsed, elapsed_n, elapsed_sum),
        gas_used: distribution(&GAS_BUCKETS, &gas, gas_n, gas_sum),
        cache: Cache {
            hits: cached,
            known: cache_known,
            hit_rate: (cache_known > 0).then(|| cached as f64 / cache_known as f64),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;
    use crate::store::query::HourStats;

    #[test]
    fn stats_sum_hours_into_counts_rates_and_buckets() {
        let row = |hour, status, tasks, e0, g4| HourStats {
            hour,
            status: Some(status),
            tasks,
            elapsed_n: tasks,
            elapsed_ms_sum: tasks * 50,
            elapsed: [e0, 0, 0, 0, 0, 0, 0, 0],
            gas: [0, 0, 0, 0, g4],
            cached: 1,
            cache_known: 2,
            ..HourStats::default()
        };
        let stats = TaskStats {
            totals: vec![
                row(10, TaskStatus::Completed, 3, 3, 3),
                row(10, TaskStatus::Failed, 1, 1, 0),
            ],
            series: vec![
                (10, Some(TaskStatus::Completed), 3),
                (11, Some(TaskStatus::Failed), 1),
            ],
        };
        let v = serde_json::to_value(stats_json(&stats, 10, 12)).expect("json");
        assert_eq!(v["tasks"]["total"], 4);
        assert_eq!(v["success_rate"], 0.75);
        assert_eq!(v["series"][0]["completed"], 3);
        assert_eq!(v["series"][1]["failed"], 1);
        assert_eq!(v["execution_time_ms"]["buckets"][0]["count"], 4);
        assert_eq!(v["execution_time_ms"]["mean"], 50.0);
        assert_eq!(v["gas_used"]["buckets"][4]["count"], 3);
        assert_eq!(v["cache"]["hit_rate"], 0.5);
    }

    #[test]
    fn bucket_edges_and_labels_match_the_federation_protocol() {
        use truebit_protocol::bucket::{ExecTimeBucket, GasBucket};
        // The lower edges the task_hours triggers use (schema.rs).
        let elapsed_edges = [0, 100, 500, 1_000, 5_000, 10_000, 30_000, 60_000];
        for (i, edge) in elapsed_edges.into_iter().enumerate() {
            assert_eq!(
                ExecTimeBucket::from_value(Some(edge)).label(),
                ELAPSED_BUCKETS[i]
            );
            if edge > 0 {
                assert_eq!(
                    ExecTimeBucket::from_value(Some(edge - 1)).label(),
                    ELAPSED_BUCKETS[i - 1]
                );
            }
        }
        let gas_edges = [0, 100_000, 1_000_000, 10_000_000, 100_000_000];
        for (i, edge) in gas_edges.into_iter().enumerate() {
            assert_eq!(GasBucket::from_value(Some(edge)).label(), GAS_BUCKETS[i]);
        }
    }
}
