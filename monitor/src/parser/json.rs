//! Borrowing serde views of the three JSON payloads (task_created, metrics, invoice).
//!
//! Only the fields the monitor keeps are named; serde skips the others without
//! allocating. Leaf values are [`Lenient`]: a number may arrive as a JSON number or a
//! string, and a value of an unexpected type becomes "absent" instead of an error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::model::{Invoice, LineItem, Metrics, TaskCreated};

use super::line::{parse_rfc3339, DayCache};

/// A JSON leaf of any type, kept borrowed when possible.
#[derive(Debug, Default)]
pub(crate) enum Lenient<'a> {
    #[default]
    Absent,
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(Cow<'a, str>),
    /// An object or array (skipped).
    Nested,
}

impl Lenient<'_> {
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Lenient::U64(n) => Some(*n),
            Lenient::I64(n) => u64::try_from(*n).ok(),
            Lenient::F64(f) => float_to_int(*f).and_then(|n| u64::try_from(n).ok()),
            Lenient::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Lenient::U64(n) => i64::try_from(*n).ok(),
            Lenient::I64(n) => Some(*n),
            Lenient::F64(f) => float_to_int(*f).and_then(|n| i64::try_from(n).ok()),
            Lenient::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Lenient::Bool(b) => Some(*b),
            Lenient::Str(s) if s == "true" => Some(true),
            Lenient::Str(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// The value as text: strings as they are, numbers and booleans printed.
    pub(crate) fn to_text(&self) -> Option<String> {
        match self {
            Lenient::Str(s) => Some(s.clone().into_owned()),
            Lenient::U64(n) => Some(n.to_string()),
            Lenient::I64(n) => Some(n.to_string()),
            Lenient::F64(f) => Some(f.to_string()),
            Lenient::Bool(b) => Some(b.to_string()),
            Lenient::Absent | Lenient::Nested => None,
        }
    }

    /// Text identifying something (ids, hashes): trimmed, non-empty.
    pub(crate) fn to_id(&self) -> Option<String> {
        let text = self.to_text()?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            None
        } else if trimmed.len() == text.len() {
            Some(text)
        } else {
            Some(trimmed.to_owned())
        }
    }
}

fn float_to_int(f: f64) -> Option<i128> {
    // Float-to-int `as` saturates; the range check keeps only exact integers.
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19).then_some(f as i128)
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LenientVisitor<'a> {
    type Value = Lenient<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Lenient::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Lenient::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Lenient::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Lenient::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Lenient::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Absent)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Lenient::Absent)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Lenient::Nested)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient::Nested)
    }
}

/// A value kept as JSON text: a string as it is (its content), anything else serialized.
#[derive(Debug, Default)]
pub(crate) struct JsonText(pub(crate) Option<String>);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonTextVisitor)
    }
}

struct JsonTextVisitor;

impl<'de> Visitor<'de> for JsonTextVisitor {
    type Value = JsonText;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(JsonText(Some(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonText(Some(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonText(Some(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(JsonText(Some(serde_json::Value::from(v).to_string())))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonText(Some(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonText(Some(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonText(None))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(JsonText(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(JsonText(Some(value.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(JsonText(Some(value.to_string())))
    }
}

/// Deserializes the first JSON value of `text`; trailing text (a junk continuation line)
/// is ignored.
fn first_value<'a, T: Deserialize<'a>>(text: &'a str) -> Option<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    T::deserialize(&mut de).ok()
}

// ---- task_created -----------------------------------------------------------------

/// Both the outer `task_created` envelope and its inner `dispatch_task` message: the
/// same field names are looked up at both levels, the inner one winning.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct TaskJson<'a> {
    #[serde(borrow)]
    execution_id: Lenient<'a>,
    #[serde(borrow)]
    timestamp: Lenient<'a>,
    #[serde(borrow)]
    message: Option<Box<TaskJson<'a>>>,
    #[serde(borrow)]
    task_id: Lenient<'a>,
    #[serde(borrow)]
    limits: Option<TaskLimits<'a>>,
    #[serde(borrow)]
    econ_params: Option<EconParams<'a>>,
    #[serde(borrow)]
    workers: Option<Workers<'a>>,
    #[serde(borrow)]
    chain_id: Lenient<'a>,
    #[serde(borrow)]
    block_number: Lenient<'a>,
    #[serde(borrow)]
    block_hash: Lenient<'a>,
    #[serde(borrow)]
    task_requester_address: Lenient<'a>,
    input: Option<JsonText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TaskLimits<'a> {
    #[serde(borrow)]
    gas: Lenient<'a>,
    #[serde(borrow)]
    memory: Lenient<'a>,
    #[serde(borrow)]
    call: Lenient<'a>,
    #[serde(borrow)]
    frame: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EconParams<'a> {
    #[serde(borrow)]
    reward: Lenient<'a>,
    #[serde(borrow)]
    required_solutions: Lenient<'a>,
    #[serde(borrow)]
    total_solutions: Lenient<'a>,
    #[serde(borrow)]
    execution_timeout: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Workers<'a> {
    #[serde(borrow)]
    block_number: Lenient<'a>,
}

/// Picks the first present value: inner message first, then the envelope.
fn pick<'x, 'a, T>(
    inner: Option<&'x TaskJson<'a>>,
    outer: &'x TaskJson<'a>,
    f: impl Fn(&'x TaskJson<'a>) -> Option<T>,
) -> Option<T> {
    inner.and_then(&f).or_else(|| f(outer))
}

/// Lower-cases an execution id so every line that names it yields the same key.
pub(crate) fn normalize_id(id: String) -> String {
    if id.bytes().any(|c| c.is_ascii_uppercase()) {
        id.to_ascii_lowercase()
    } else {
        id
    }
}

/// The `task_created` payload, `None` when the JSON is unusable or has no execution id.
pub(crate) fn task_created(text: &str) -> Option<TaskCreated> {
    let mut outer: TaskJson<'_> = first_value(text)?;
    let inner_box = outer.message.take();
    let inner = inner_box.as_deref();
    let execution_id = normalize_id(pick(inner, &outer, |t| t.execution_id.to_id())?);
    let limits = |f: fn(&TaskLimits<'_>) -> Option<u64>| {
        pick(inner, &outer, |t| t.limits.as_ref().and_then(f))
    };
    let econ = |f: fn(&EconParams<'_>) -> Option<u64>| {
        pick(inner, &outer, |t| t.econ_params.as_ref().and_then(f))
    };
    let input = inner
        .and_then(|t| t.input.as_ref())
        .or(outer.input.as_ref())
        .and_then(|t| t.0.clone());
    Some(TaskCreated {
        execution_id,
        task_id: pick(inner, &outer, |t| t.task_id.to_id()),
        chain_id: pick(inner, &outer, |t| t.chain_id.to_id()),
        block_number: pick(inner, &outer, |t| {
            t.block_number
                .as_u64()
                .or_else(|| t.workers.as_ref().and_then(|w| w.block_number.as_u64()))
        }),
        block_hash: pick(inner, &outer, |t| t.block_hash.to_id()),
        requester: pick(inner, &outer, |t| t.task_requester_address.to_id()),
        created_ms: pick(inner, &outer, |t| timestamp_ms(&t.timestamp)),
        gas_limit: limits(|l| l.gas.as_u64()),
        memory_limit: limits(|l| l.memory.as_u64()),
        call_limit: limits(|l| l.call.as_u64()),
        frame_limit: limits(|l| l.frame.as_u64()),
        reward: pick(inner, &outer, |t| {
            t.econ_params.as_ref().and_then(|e| e.reward.to_id())
        }),
        execution_timeout_ms: econ(|e| e.execution_timeout.as_u64()),
        required_solutions: econ(|e| e.required_solutions.as_u64()),
        total_solutions: econ(|e| e.total_solutions.as_u64()),
        input,
    })
}

/// `timestamp`: an RFC 3339 string, or a number of Unix milliseconds.
fn timestamp_ms(v: &Lenient<'_>) -> Option<i64> {
    match v {
        Lenient::Str(s) => {
            let (ns, _) = parse_rfc3339(s.trim().as_bytes(), &mut DayCache::default())?;
            Some(ns.div_euclid(1_000_000))
        }
        other => other.as_i64(),
    }
}

// ---- metrics -----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MetricsJson<'a> {
    #[serde(borrow)]
    elapsed: Lenient<'a>,
    #[serde(borrow)]
    wasi: Option<Wasi<'a>>,
    #[serde(borrow)]
    metering: Option<Metering<'a>>,
    #[serde(borrow)]
    execution: Option<ExecutionInfo<'a>>,
    output: Option<JsonText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Wasi<'a> {
    #[serde(borrow)]
    exit_code: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Metering<'a> {
    #[serde(borrow)]
    limits: Option<TaskLimits<'a>>,
    #[serde(borrow)]
    peak: Option<TaskLimits<'a>>,
    #[serde(borrow)]
    last: Option<Last<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Last<'a> {
    #[serde(borrow)]
    steps: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExecutionInfo<'a> {
    #[serde(borrow)]
    wasm: Option<Wasm<'a>>,
    #[serde(borrow)]
    prepare: Option<Prepare<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Wasm<'a> {
    #[serde(borrow)]
    size: Lenient<'a>,
    #[serde(borrow)]
    hash: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Prepare<'a> {
    #[serde(borrow)]
    cached: Lenient<'a>,
}

/// A metrics block, `None` when the JSON is unusable or has none of `elapsed`, `wasi`,
/// `metering` (plain program output is not a metrics block).
pub(crate) fn metrics(text: &str) -> Option<Metrics> {
    let m: MetricsJson<'_> = first_value(text)?;
    if matches!(m.elapsed, Lenient::Absent) && m.wasi.is_none() && m.metering.is_none() {
        return None;
    }
    let metering = m.metering.unwrap_or_default();
    let limits = metering.limits.unwrap_or_default();
    let peak = metering.peak.unwrap_or_default();
    let execution = m.execution.unwrap_or_default();
    let wasm = execution.wasm.unwrap_or_default();
    Some(Metrics {
        elapsed_ns: m.elapsed.as_u64(),
        exit_code: m.wasi.and_then(|w| w.exit_code.as_i64()),
        steps: metering.last.and_then(|l| l.steps.as_u64()),
        gas_limit: limits.gas.as_u64(),
        memory_limit: limits.memory.as_u64(),
        memory_peak: peak.memory.as_u64(),
        call_peak: peak.call.as_u64(),
        frame_peak: peak.frame.as_u64(),
        wasm_size: wasm.size.as_u64(),
        wasm_hash: wasm.hash.to_id(),
        cached: execution.prepare.and_then(|p| p.cached.as_bool()),
        output: m.output.and_then(|o| o.0),
    })
}

// ---- invoice -----------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct InvoiceJson<'a> {
    #[serde(borrow)]
    invoice_id: Lenient<'a>,
    #[serde(borrow)]
    execution_id: Lenient<'a>,
    #[serde(borrow)]
    task_id: Lenient<'a>,
    #[serde(borrow, rename = "taskCreated_timeStamp")]
    task_created_ts: Lenient<'a>,
    #[serde(borrow)]
    step_gas_price: Lenient<'a>,
    #[serde(borrow)]
    byte_gas_price: Lenient<'a>,
    #[serde(borrow, alias = "lineItems")]
    line_item: Option<Vec<LineItemJson<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LineItemJson<'a> {
    #[serde(borrow)]
    operation: Lenient<'a>,
    #[serde(borrow)]
    account: Lenient<'a>,
    #[serde(borrow)]
    total_steps_computed: Lenient<'a>,
    #[serde(borrow)]
    peak_memory_used: Lenient<'a>,
}

/// An invoice, `None` when the JSON is unusable. Line items keep their order; one without
/// an `operation` gets an empty operation rather than being dropped.
pub(crate) fn invoice(text: &str) -> Option<Invoice> {
    let inv: InvoiceJson<'_> = first_value(text)?;
    Some(Invoice {
        invoice_id: inv.invoice_id.as_i64(),
        execution_id: inv.execution_id.to_id().map(normalize_id),
        task_id: inv.task_id.to_id(),
        task_created_ts: inv.task_created_ts.as_i64(),
        step_gas_price: inv.step_gas_price.to_id(),
        byte_gas_price: inv.byte_gas_price.to_id(),
        line_items: inv
            .line_item
            .unwrap_or_default()
            .into_iter()
            .map(|item| LineItem {
                operation: item.operation.to_text().unwrap_or_default(),
                account: item.account.to_id(),
                steps: item.total_steps_computed.to_id(),
                memory: item.peak_memory_used.to_id(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strings_and_as_numbers_give_the_same_task() {
        let a = task_created(
            r#"{"executionId":"E","message":{"limits":{"gas":"1099511627776","memory":"1024"},"econParams":{"reward":"0","requiredSolutions":4,"executionTimeout":"30000"},"chainId":"43113","blockNumber":"70259248"}}"#,
        )
        .expect("task");
        let b = task_created(
            r#"{"executionId":"E","message":{"limits":{"gas":1099511627776,"memory":1024},"econParams":{"reward":0,"requiredSolutions":"4","executionTimeout":30000},"chainId":43113,"blockNumber":70259248}}"#,
        )
        .expect("task");
        assert_eq!(a, b);
        assert_eq!(a.execution_id, "e");
        assert_eq!(a.gas_limit, Some(1_099_511_627_776));
        assert_eq!(a.memory_limit, Some(1024));
        assert_eq!(a.reward.as_deref(), Some("0"));
        assert_eq!(a.required_solutions, Some(4));
        assert_eq!(a.execution_timeout_ms, Some(30_000));
        assert_eq!(a.chain_id.as_deref(), Some("43113"));
        assert_eq!(a.block_number, Some(70_259_248));
    }

    #[test]
    fn task_input_string_is_kept_and_object_is_serialized() {
        let s = task_created(r#"{"executionId":"e","message":{"input":"{\"a\": [1, 2]}"}}"#)
            .expect("task");
        assert_eq!(s.input.as_deref(), Some(r#"{"a": [1, 2]}"#));
        let o = task_created(r#"{"executionId":"e","message":{"input":{"a":[1,2],"b":"x"}}}"#)
            .expect("task");
        assert_eq!(o.input.as_deref(), Some(r#"{"a":[1,2],"b":"x"}"#));
    }

    #[test]
    fn task_created_timestamp_becomes_unix_milliseconds() {
        let t = task_created(r#"{"executionId":"e","timestamp":"2025-11-24T13:55:34.118Z"}"#)
            .expect("task");
        assert_eq!(t.created_ms, Some(1_763_992_534_118));
    }

    #[test]
    fn task_without_execution_id_is_unusable() {
        assert_eq!(task_created(r#"{"message":{"taskId":"rs_1"}}"#), None);
        assert_eq!(task_created(r#"{"executionId":"e","message":"#), None);
    }

    #[test]
    fn metrics_read_every_documented_field() {
        let m = metrics(
            r#"{"elapsed":"842133917","wasi":{"exitCode":0},"metering":{"limits":{"gas":60000000000,"memory":1024,"call":65536,"frame":524288},"peak":{"memory":37,"call":412,"frame":9120},"last":{"steps":19373422}},"execution":{"wasm":{"size":1839201,"hash":"ab"},"prepare":{"cached":true}},"output":{"ok":true}}"#,
        )
        .expect("metrics");
        assert_eq!(
            m,
            Metrics {
                elapsed_ns: Some(842_133_917),
                exit_code: Some(0),
                steps: Some(19_373_422),
                gas_limit: Some(60_000_000_000),
                memory_limit: Some(1024),
                memory_peak: Some(37),
                call_peak: Some(412),
                frame_peak: Some(9120),
                wasm_size: Some(1_839_201),
                wasm_hash: Some("ab".into()),
                cached: Some(true),
                output: Some(r#"{"ok":true}"#.into()),
            }
        );
    }

    #[test]
    fn json_without_metrics_fields_is_not_a_metrics_block() {
        assert_eq!(metrics(r#"{"result":42}"#), None);
        assert_eq!(metrics("hello"), None);
    }

    #[test]
    fn invoice_line_items_keep_their_order_and_raw_figures() {
        let inv = invoice(
            r#"{"invoiceId":"1234","executionId":"E","taskCreated_timeStamp":1762363564,"stepGasPrice":1,"lineItem":[{"operation":"charge","account":"0xa","total_steps_computed":"19373422","peak_memory_used":37},{"account":"0xb"}]}"#,
        )
        .expect("invoice");
        assert_eq!(inv.invoice_id, Some(1234));
        assert_eq!(inv.execution_id.as_deref(), Some("e"));
        assert_eq!(inv.task_created_ts, Some(1_762_363_564));
        assert_eq!(inv.step_gas_price.as_deref(), Some("1"));
        assert_eq!(
            inv.line_items,
            vec![
                LineItem {
                    operation: "charge".into(),
                    account: Some("0xa".into()),
                    steps: Some("19373422".into()),
                    memory: Some("37".into()),
                },
                LineItem {
                    operation: String::new(),
                    account: Some("0xb".into()),
                    steps: None,
                    memory: None
                },
            ]
        );
    }

    #[test]
    fn trailing_text_after_the_json_is_ignored() {
        let inv = invoice("{\"invoiceId\":7}\n    some junk").expect("invoice");
        assert_eq!(inv.invoice_id, Some(7));
    }
}
