//! Turning what Docker hands out into lines: timestamped log frames (16 KiB partial
//! frames joined back per stream) and the `json-file` log driver's records.

use std::borrow::Cow;

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::{LineMeta, Pos, UnixNanos};

/// Parses an RFC 3339 timestamp (Docker writes nanoseconds) into Unix nanoseconds.
pub fn parse_rfc3339_ns(s: &str) -> Option<UnixNanos> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// Formats Unix nanoseconds the way Docker does (`2025-11-24T13:55:34.123456789Z`).
pub fn format_rfc3339_ns(ns: UnixNanos) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            nanos
        ),
        Err(_) => String::from("invalid-time"),
    }
}

/// Splits a leading `TIMESTAMP ` off a Docker log frame.
fn split_timestamp(frame: &[u8]) -> (Option<UnixNanos>, &[u8]) {
    let head = &frame[..frame.len().min(48)];
    if let Some(sp) = memchr::memchr(b' ', head) {
        if let Some(ns) = std::str::from_utf8(&frame[..sp])
            .ok()
            .and_then(parse_rfc3339_ns)
        {
            return (Some(ns), &frame[sp + 1..]);
        }
    }
    (None, frame)
}

/// Which output stream a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Joins Docker log frames (requested with `timestamps=true`) back into lines.
///
/// Docker splits a line longer than 16 KiB into several frames, each with its own
/// timestamp; only the last one ends with `\n`. Partial lines are kept per stream, so an
/// interleaved stderr line does not break a long stdout line. Each complete line gets the
/// receive time of its first frame and the position `(timestamp, n)` of the frame that
/// completed it, where `n` counts the lines completed at that same timestamp.
#[derive(Debug, Default)]
pub struct LineAssembler {
    partial: [Vec<u8>; 2],
    partial_ts: [Option<UnixNanos>; 2],
    last_ts: UnixNanos,
    seq: i64,
}

/// A line longer than this is emitted in pieces rather than buffered without bound.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

impl LineAssembler {
    pub fn push_frame(
        &mut self,
        stream: Stream,
        frame: &[u8],
        mut emit: impl FnMut(&[u8], LineMeta),
    ) {
        let (ts, body) = split_timestamp(frame);
        let frame_ts = ts.unwrap_or(self.last_ts);
        let i = stream as usize;
        let mut rest = body;
        while !rest.is_empty() {
            let (piece, complete) = match memchr::memchr(b'\n', rest) {
                Some(nl) => (&rest[..nl], Some(nl + 1)),
                None => (rest, None),
            };
            if self.partial[i].is_empty() {
                self.partial_ts[i] = ts;
            }
            self.partial[i].extend_from_slice(piece);
            match complete {
                Some(used) => {
                    self.emit_line(i, frame_ts, &mut emit);
                    rest = &rest[used..];
                }
                None => {
                    if self.partial[i].len() >= MAX_LINE_BYTES {
                        self.emit_line(i, frame_ts, &mut emit);
                    }
                    break;
                }
            }
        }
    }

    /// Emits partial lines left at the end of a stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], LineMeta)) {
        for i in 0..2 {
            if !self.partial[i].is_empty() {
                let ts = self.last_ts;
                self.emit_line(i, ts, &mut emit);
            }
        }
    }

    fn emit_line(&mut self, i: usize, frame_ts: UnixNanos, emit: &mut impl FnMut(&[u8], LineMeta)) {
        if frame_ts == self.last_ts {
            self.seq += 1;
        } else {
            self.last_ts = frame_ts;
            self.seq = 0;
        }
        let meta = LineMeta {
            received_ns: self.partial_ts[i],
            pos: Pos::new(frame_ts, self.seq),
        };
        let line = std::mem::take(&mut self.partial[i]);
        emit(strip_cr(&line), meta);
        self.partial[i] = line;
        self.partial[i].clear();
        self.partial_ts[i] = None;
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// One record of Docker's `json-file` log driver
/// (`{"log":"text\n","stream":"stdout","time":"2025-...Z"}`).
#[derive(Debug, Deserialize)]
pub struct JsonFileRecord<'a> {
    #[serde(borrow)]
    pub log: Cow<'a, str>,
    #[serde(default)]
    pub stream: Option<Cow<'a, str>>,
    #[serde(default)]
    pub time: Option<Cow<'a, str>>,
}

impl JsonFileRecord<'_> {
    /// Parses a line that looks like a json-file record; `None` if it is not one.
    pub fn parse(line: &[u8]) -> Option<JsonFileRecord<'_>> {
        if !line.starts_with(b"{\"log\":") {
            return None;
        }
        serde_json::from_slice(line).ok()
    }

    pub fn time_ns(&self) -> Option<UnixNanos> {
        self.time.as_deref().and_then(parse_rfc3339_ns)
    }

    /// The stream this record came from (stdout unless it says stderr).
    pub fn stream(&self) -> Stream {
        match self.stream.as_deref() {
            Some("stderr") => Stream::Stderr,
            _ => Stream::Stdout,
        }
    }

    /// The record as a Docker API frame (`TIMESTAMP text`), so json-file input goes
    /// through the same [`LineAssembler`] as the live API.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut frame = Vec::with_capacity(self.log.len() + 32);
        if let Some(ns) = self.time_ns() {
            frame.extend_from_slice(format_rfc3339_ns(ns).as_bytes());
            frame.push(b' ');
        }
        frame.extend_from_slice(self.log.as_bytes());
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(frames: &[(Stream, &str)]) -> Vec<(String, LineMeta)> {
        let mut asm = LineAssembler::default();
        let mut out = Vec::new();
        for (s, f) in frames {
            asm.push_frame(*s, f.as_bytes(), |l, m| {
                out.push((String::from_utf8_lossy(l).into_owned(), m))
            });
        }
        asm.finish(|l, m| out.push((String::from_utf8_lossy(l).into_owned(), m)));
        out
    }

    #[test]
    fn rfc3339_nanoseconds_round_trip() {
        let ns = parse_rfc3339_ns("2025-11-24T13:55:34.123456789Z").expect("valid");
        assert_eq!(ns, 1_763_992_534_123_456_789);
        assert_eq!(format_rfc3339_ns(ns), "2025-11-24T13:55:34.123456789Z");
    }

    #[test]
    fn partial_frames_are_joined_per_stream() {
        let out = collect(&[
            (Stream::Stdout, "2025-11-24T13:55:34.000000001Z first half "),
            (Stream::Stderr, "2025-11-24T13:55:34.000000002Z an error\n"),
            (
                Stream::Stdout,
                "2025-11-24T13:55:34.000000003Z second half\n",
            ),
        ]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "an error");
        assert_eq!(out[1].0, "first half second half");
        assert_eq!(out[1].1.received_ns, Some(1_763_992_534_000_000_001));
        assert_eq!(out[1].1.pos, Pos::new(1_763_992_534_000_000_003, 0));
    }

    #[test]
    fn equal_timestamps_get_increasing_positions() {
        let out = collect(&[
            (Stream::Stdout, "2025-11-24T13:55:34.5Z a\n"),
            (Stream::Stdout, "2025-11-24T13:55:34.5Z b\n"),
            (Stream::Stdout, "2025-11-24T13:55:35Z c\r\n"),
        ]);
        let got: Vec<_> = out.iter().map(|(l, m)| (l.as_str(), m.pos.minor)).collect();
        assert_eq!(got, vec![("a", 0), ("b", 1), ("c", 0)]);
        assert!(out[0].1.pos < out[1].1.pos && out[1].1.pos < out[2].1.pos);
    }

    #[test]
    fn unterminated_line_is_emitted_at_the_end() {
        let out = collect(&[(Stream::Stdout, "2025-11-24T13:55:34Z no newline")]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "no newline");
    }

    #[test]
    fn frame_without_timestamp_is_kept_whole() {
        let out = collect(&[(Stream::Stdout, "plain text\n")]);
        assert_eq!(out[0].0, "plain text");
        assert_eq!(out[0].1.received_ns, None);
    }

    #[test]
    fn json_file_record_becomes_a_frame() {
        let line = br#"{"log":"2025-11-24 13:55:34 info: x\n","stream":"stderr","time":"2025-11-24T13:55:34.123456789Z"}"#;
        let rec = JsonFileRecord::parse(line).expect("json-file record");
        assert_eq!(rec.stream(), Stream::Stderr);
        assert_eq!(rec.time_ns(), Some(1_763_992_534_123_456_789));
        assert_eq!(
            rec.to_frame(),
            b"2025-11-24T13:55:34.123456789Z 2025-11-24 13:55:34 info: x\n".to_vec()
        );
        assert!(JsonFileRecord::parse(b"{\"other\":1}").is_none());
    }
}
