//! Pure, never-failing parser for runner-node console output (see shared LOGFORMAT.md).
//!
//! Interface (implementation in progress):
//!
//! ```ignore
//! let mut p = Parser::new(ParserConfig::default());
//! let mut out = Vec::new();
//! p.push_line(raw_bytes, LineMeta { received_ns, pos }, &mut out); // may emit finished entries
//! p.flush(&mut out);                // emits the pending entry (end of input or idle)
//! let state: ParserState = p.state(); // pending metrics, to persist with the cursor
//! ```

