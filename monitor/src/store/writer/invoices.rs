//! Invoice rows and their line items.

use rusqlite::{params, CachedStatement, Transaction};

use super::entries::TaskRows;
use crate::model::{Entry, Invoice};

/// Parses a figure printed as text (`"19373422"`), if it is an integer.
fn parse_int(text: Option<&String>) -> Option<i64> {
    text.and_then(|t| t.trim().parse().ok())
}

/// An invoice line, stored after the transaction's tasks.
pub(super) struct InvoiceRow<'a> {
    pub(super) entry: &'a Entry,
    pub(super) invoice: &'a Invoice,
    pub(super) time_ns: i64,
}

/// Inserts the invoices of a transaction and their line items, each linked to its task's
/// row when that task is stored (schema version 15), with the two statements prepared
/// once for all of them.
pub(super) fn insert_invoices<'a>(
    tx: &Transaction<'_>,
    rows: &[InvoiceRow<'a>],
    tasks: &mut TaskRows<'_, 'a>,
) -> rusqlite::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut invoice = tx.prepare_cached(
        "INSERT INTO invoices (invoice_id, execution_id, task_id, task_created_ts,
           step_gas_price, byte_gas_price, time_ns, node_time, received_ns, task_row)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (invoice_id, execution_id) DO NOTHING",
    )?;
    let mut item = tx.prepare_cached(
        "INSERT INTO invoice_items (invoice_row, position, operation, account, steps,
           steps_value, memory, memory_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for row in rows {
        insert_invoice(tx, &mut invoice, &mut item, row, tasks)?;
    }
    Ok(())
}

fn insert_invoice<'a>(
    tx: &Transaction<'_>,
    insert: &mut CachedStatement<'_>,
    item: &mut CachedStatement<'_>,
    row: &InvoiceRow<'a>,
    tasks: &mut TaskRows<'_, 'a>,
) -> rusqlite::Result<()> {
    let InvoiceRow {
        entry,
        invoice,
        time_ns,
    } = row;
    let execution_id = invoice
        .execution_id
        .as_deref()
        .or(entry.execution_id.as_deref());
    let task_row = match execution_id {
        Some(id) => tasks.get(tx, id)?,
        None => None,
    };
    let inserted = insert.execute(params![
        invoice.invoice_id,
        execution_id,
        invoice.task_id,
        invoice.task_created_ts,
        invoice.step_gas_price,
        invoice.byte_gas_price,
        time_ns,
        entry.node_time,
        entry.received_ns,
        task_row,
    ])?;
    if inserted == 0 {
        return Ok(());
    }
    let id = tx.last_insert_rowid();
    for (position, line) in invoice.line_items.iter().enumerate() {
        item.execute(params![
            id,
            position as i64,
            line.operation,
            line.account,
            line.steps,
            parse_int(line.steps.as_ref()),
            line.memory,
            parse_int(line.memory.as_ref()),
        ])?;
    }
    Ok(())
}
