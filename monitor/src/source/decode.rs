//! Turning what Docker hands out into lines: timestamped log frames (16 KiB partial
//! frames joined back per stream) and the `json-file` log driver's records.

use std::borrow::Cow;

use serde::Deserialize;

use crate::model::{LineMeta, Pos, UnixNanos};

pub use truebit_clock::{parse_rfc3339_ns, rfc3339_ns as format_rfc3339_ns};

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
/// timestamp; only the last one ends with `\n`. A joined line keeps at most
/// [`MAX_LINE_BYTES`] (then marked as truncated). Partial lines are kept per stream, so an
/// interleaved stderr line does not break a long stdout line. Each complete line gets the
/// receive time of its first frame and the position `(timestamp, n)` of the frame that
/// completed it, where `n` counts the lines completed at that same timestamp.
#[derive(Debug, Default)]
pub struct LineAssembler {
    partial: [LineBuf; 2],
    partial_ts: [Option<UnixNanos>; 2],
    last_ts: UnixNanos,
    seq: i64,
}

/// The longest line kept, in bytes (1 MiB). Every source assembles its lines in a
/// [`LineBuf`]: of a longer line the first `MAX_LINE_BYTES` are kept and marked (see
/// [`truncation_mark`]), the rest is skipped as it is read, never buffered.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// What ends a line that was cut at [`MAX_LINE_BYTES`]: ` …[truncated N bytes]`, N being
/// the bytes left out.
pub fn truncation_mark(dropped: u64) -> String {
    format!(" \u{2026}[truncated {dropped} bytes]")
}

/// One line being assembled from pieces (reads, frames), holding at most
/// [`MAX_LINE_BYTES`] of it; what does not fit is only counted.
#[derive(Debug, Default)]
pub struct LineBuf {
    buf: Vec<u8>,
    dropped: u64,
}

impl LineBuf {
    /// Appends a piece of the line (without its `\n`).
    pub fn push(&mut self, piece: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.buf.len());
        let keep = room.min(piece.len());
        self.buf.extend_from_slice(&piece[..keep]);
        self.dropped += (piece.len() - keep) as u64;
    }

    /// Whether nothing of a line was pushed since the last [`LineBuf::take`].
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.dropped == 0
    }

    /// Hands the line to `f` (cut lines with their mark) and starts the next one.
    pub fn take<T>(&mut self, f: impl FnOnce(&[u8]) -> T) -> T {
        if self.dropped > 0 {
            // Cut on a character boundary: an incomplete UTF-8 sequence at the end is
            // left out too.
            let cut = utf8_tail_cut(&self.buf);
            self.dropped += (self.buf.len() - cut) as u64;
            self.buf.truncate(cut);
            self.buf
                .extend_from_slice(truncation_mark(self.dropped).as_bytes());
        }
        let out = f(&self.buf);
        self.clear();
        out
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.dropped = 0;
        if self.buf.capacity() > 64 * 1024 {
            // A long line does not keep its megabyte for the short ones after it.
            self.buf.shrink_to(64 * 1024);
        }
    }
}

/// The length of `buf` without an incomplete UTF-8 sequence at its end.
fn utf8_tail_cut(buf: &[u8]) -> usize {
    let start = buf.len().saturating_sub(3);
    for i in (start..buf.len()).rev() {
        let b = buf[i];
        let need = match b {
            0x00..=0x7f => return buf.len(),
            0x80..=0xbf => continue,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        return if buf.len() - i < need { i } else { buf.len() };
    }
    buf.len()
}

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
            self.partial[i].push(piece);
            match complete {
                Some(used) => {
                    self.emit_line(i, frame_ts, &mut emit);
                    rest = &rest[used..];
                }
                None => break,
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
        self.partial[i].take(|line| emit(strip_cr(line), meta));
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
    fn joined_partial_frames_stop_at_the_line_bound_and_say_how_much_was_cut() {
        // 100 partial frames of 16 KiB (1.56 MiB in all), then the end of the line, then
        // a short line: the long one keeps its first MiB and a mark, the next is whole.
        let mut asm = LineAssembler::default();
        let mut out: Vec<(Vec<u8>, LineMeta)> = Vec::new();
        let piece = "y".repeat(16 * 1024);
        for n in 0..100 {
            let frame = format!("2025-11-24T13:55:34.{n:09}Z {piece}");
            asm.push_frame(Stream::Stdout, frame.as_bytes(), |l, m| {
                out.push((l.to_vec(), m));
            });
        }
        assert!(out.is_empty(), "nothing is emitted before the line ends");
        for frame in [
            "2025-11-24T13:55:35Z end\n",
            "2025-11-24T13:55:36Z next line\n",
        ] {
            asm.push_frame(Stream::Stdout, frame.as_bytes(), |l, m| {
                out.push((l.to_vec(), m));
            });
        }
        assert_eq!(out.len(), 2);
        let total = 100 * 16 * 1024 + 3;
        let mark = truncation_mark((total - MAX_LINE_BYTES) as u64);
        let (long, meta) = &out[0];
        assert_eq!(long.len(), MAX_LINE_BYTES + mark.len());
        assert!(long[..MAX_LINE_BYTES].iter().all(|&b| b == b'y'));
        assert_eq!(&long[MAX_LINE_BYTES..], mark.as_bytes());
        assert_eq!(meta.received_ns, Some(1_763_992_534_000_000_000));
        assert_eq!(out[1].0, b"next line");
    }

    #[test]
    fn a_cut_line_ends_on_a_character_boundary() {
        let mut line = LineBuf::default();
        line.push(&vec![b'a'; MAX_LINE_BYTES - 1]);
        line.push("\u{e9}\u{e9}".as_bytes());
        let text = line.take(|l| String::from_utf8(l.to_vec()).expect("valid UTF-8"));
        assert_eq!(
            text,
            format!("{}{}", "a".repeat(MAX_LINE_BYTES - 1), truncation_mark(4))
        );
        assert!(line.is_empty());
        line.push(b"short");
        assert_eq!(line.take(<[u8]>::to_vec), b"short");
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
