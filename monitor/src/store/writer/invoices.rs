//! Invoice rows and their line items.

use rusqlite::{params, Transaction};

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

pub(super) fn insert_invoice(tx: &Transaction<'_>, row: &InvoiceRow<'_>) -> rusqlite::Result<()> {
    let InvoiceRow {
        entry,
        invoice,
        time_ns,
    } = row;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO invoices (invoice_id, execution_id, task_id, task_created_ts,
               step_gas_price, byte_gas_price, time_ns, node_time, received_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (invoice_id, execution_id) DO NOTHING",
        )?
        .execute(params![
            invoice.invoice_id,
            invoice
                .execution_id
                .as_ref()
                .or(entry.execution_id.as_ref()),
            invoice.task_id,
            invoice.task_created_ts,
            invoice.step_gas_price,
            invoice.byte_gas_price,
            time_ns,
            entry.node_time,
            entry.received_ns,
        ])?;
    if inserted == 0 {
        return Ok(());
    }
    let id = tx.last_insert_rowid();
    let mut insert = tx.prepare_cached(
        "INSERT INTO invoice_items (invoice_row, position, operation, account, steps,
           steps_value, memory, memory_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for (position, item) in invoice.line_items.iter().enumerate() {
        insert.execute(params![
            id,
            position as i64,
            item.operation,
            item.account,
            item.steps,
            parse_int(item.steps.as_ref()),
            item.memory,
            parse_int(item.memory.as_ref()),
        ])?;
    }
    Ok(())
}
