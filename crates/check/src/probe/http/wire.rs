//! The HTTP/1.x client side of HTTP_GET / SSL_GET on the wire, sans-IO: the request
//! bytes (built once per URL), the end of the response head, the status line, the
//! body framing (Content-Length, `Transfer-Encoding: chunked`, EOF) and a chunked
//! decoder. The probe in [`super`] does the I/O around it.
//!
//! Why our own codec (like the VRRP and ARP codecs) instead of hyper: CPU. A health
//! check sends one fixed request per connection and needs the status code (and, only
//! with `digest`/`regex`, the body); hyper's per-connection machinery (a connection
//! task, header maps, request/response objects, 8 KiB+ buffers, an explicit
//! `shutdown`) cost several times the probe's own work at thousands of probes per
//! second. What hyper did for us and still matters is kept: its framing rules for
//! responses (RFC 9112 §6.3), the refusal of malformed heads, and its limits (here:
//! [`MAX_HEAD`] for the head, the caller's limit for the body).
//!
//! Lenient where hyper was needlessly strict for a health check: a bare LF ends a
//! line, the chunked body ends at the last chunk (trailers are not read), a chunk's
//! CRLF may be a bare LF, and (in the probe) a TLS server closing without
//! close_notify ends a body delimited by the close. Stricter in one way: a response
//! that cannot start with a status line fails at once, not at the timeout.

use std::fmt::Write as _;

/// The largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 << 10;

/// keepalived's User-Agent, kept so server-side filters and logs written for
/// keepalived's checks keep working.
pub const USER_AGENT_VALUE: &str = "KeepAliveClient";

/// How many hex digits a chunk size may have (more cannot fit in 64 bits).
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;
/// The longest chunk extension (`;name=value` after a chunk size) accepted.
const MAX_CHUNK_EXT: usize = 4096;

/// The request target for `path`: an absolute path with an optional query, in the
/// characters an `http::Uri` accepts (hyper's rules, which HTTP_GET used before); a
/// `#fragment` is not sent.
pub fn request_target(path: &str) -> Result<&str, String> {
    let bad = || format!("`{path}` is not an absolute path");
    let target = path.split('#').next().unwrap_or_default();
    if !target.starts_with('/') || path.len() > u16::MAX as usize - 1 {
        return Err(bad());
    }
    let (p, q) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Path: RFC 3986 pchar and '/', plus '"', '{', '}' (sent unencoded by clients in
    // the wild, accepted by http::Uri); query: any visible ASCII. Non-ASCII (UTF-8)
    // is passed through, like http::Uri does.
    let path_ok = |b: u8| {
        matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E)
            || matches!(b, b'"' | b'{' | b'}')
            || b >= 0x80
    };
    let query_ok = |b: u8| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E) || b >= 0x80;
    if !p.bytes().all(path_ok) || !q.is_none_or(|q| q.bytes().all(query_ok)) {
        return Err(bad());
    }
    Ok(target)
}

/// The whole request: `GET target HTTP/1.x`, Host, User-Agent, `Connection: close`
/// when asked (HTTP/1.1 and keepalived's `1.0C`), and the blank line.
pub fn request(path: &str, host: &str, http11: bool, close: bool) -> Result<Box<[u8]>, String> {
    let target = request_target(path)?;
    // What http::HeaderValue accepts: visible ASCII, space and tab.
    if !host
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(format!(
            "invalid Host header `{}`",
            host.escape_default().collect::<String>()
        ));
    }
    let mut r = String::with_capacity(80 + target.len() + host.len());
    let _ = write!(
        r,
        "GET {target} HTTP/1.{}\r\nHost: {host}\r\nUser-Agent: {USER_AGENT_VALUE}\r\n",
        u8::from(http11)
    );
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    Ok(r.into_bytes().into_boxed_slice())
}

/// Where the head in `buf` ends (just past its blank line), looking from `*scanned`
/// on; `*scanned` is advanced so that bytes are not looked at twice as `buf` grows.
pub fn head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    // A line ends with LF (CRLF or a bare LF); the head ends with an empty line.
    let mut i = *scanned;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + off;
        match buf.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') => match buf.get(lf + 2) {
                Some(b'\n') => return Some(lf + 3),
                Some(_) => {}
                None => {
                    *scanned = lf;
                    return None;
                }
            },
            Some(_) => {}
            None => {
                *scanned = lf;
                return None;
            }
        }
        i = lf + 1;
    }
    *scanned = buf.len();
    None
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (101, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Eof,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub code: u16,
    pub framing: Framing,
}

impl Head {
    /// 1xx other than 101: an interim response, the real one follows.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.code) && self.code != 101
    }
}

/// `bytes` for a failure reason: at most 40 characters, escaped.
fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(40)];
    let mut s: String = cut.escape_ascii().to_string();
    if bytes.len() > cut.len() {
        s.push_str("...");
    }
    s
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let e = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (s, e) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// The status line `HTTP/1.x NNN reason` (without its line end): version and code.
fn parse_status(status: &[u8]) -> Result<(u8, u16), String> {
    let bad_status = || format!("malformed status line `{}`", excerpt(status));
    let rest = status.strip_prefix(b"HTTP/1.").ok_or_else(bad_status)?;
    let (minor, code, reason) = match rest {
        [v @ (b'0' | b'1'), b' ', c @ b'1'..=b'9', d, e, reason @ ..]
            if d.is_ascii_digit() && e.is_ascii_digit() =>
        {
            let code = (*c - b'0') as u16 * 100 + (*d - b'0') as u16 * 10 + (*e - b'0') as u16;
            (*v - b'0', code, reason)
        }
        _ => return Err(bad_status()),
    };
    match reason {
        [] => Ok((minor, code)),
        [b' ', text @ ..] if !text.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) => {
            Ok((minor, code))
        }
        _ => Err(bad_status()),
    }
}

/// Checks the start of a response whose head is not complete yet: fails as soon as
/// the bytes cannot begin a status line, so that a server speaking something else
/// (an SSH banner, TLS) fails at once, not at the timeout.
pub fn check_start(buf: &[u8]) -> Result<(), String> {
    const PREFIX: &[u8] = b"HTTP/1.";
    let eol = buf.iter().position(|&b| b == b'\n');
    let line = match eol {
        Some(i) => buf[..i].strip_suffix(b"\r").unwrap_or(&buf[..i]),
        None => buf,
    };
    let n = line.len().min(PREFIX.len());
    if line[..n] != PREFIX[..n] {
        return Err(format!("malformed status line `{}`", excerpt(line)));
    }
    if eol.is_some() {
        parse_status(line)?;
    }
    Ok(())
}

/// Parses a complete head (as delimited by [`head_end`]): the status line, the header
/// lines, and the body framing by hyper's (RFC 9112's) rules.
pub fn parse_head(head: &[u8]) -> Result<Head, String> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let (minor, code) = parse_status(lines.next().unwrap_or_default())?;
    let mut content_length: Option<u64> = None;
    let mut bad_length = false;
    let mut chunked = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let bad_line = || format!("malformed header line `{}`", excerpt(line));
        let colon = line.iter().position(|&b| b == b':').ok_or_else(bad_line)?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad_line());
        }
        if value.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Err(bad_line());
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            // Every value (of every Content-Length line) must be the same number.
            for v in value.split(|&b| b == b',').map(trim) {
                let n = (!v.is_empty() && v.iter().all(u8::is_ascii_digit))
                    .then(|| {
                        v.iter().try_fold(0u64, |n, d| {
                            n.checked_mul(10)?.checked_add((d - b'0') as u64)
                        })
                    })
                    .flatten();
                match (n, content_length) {
                    (Some(n), None) => content_length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => bad_length = true,
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last transfer coding of the last header decides.
            let last = value.rsplit(|&b| b == b',').next().map(trim);
            chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
        }
    }
    let framing = match code {
        101 | 204 | 304 => Framing::Empty,
        c if c < 200 => Framing::Empty,
        _ => match chunked {
            Some(_) if minor == 0 => {
                return Err("Transfer-Encoding in an HTTP/1.0 response".into());
            }
            Some(true) => Framing::Chunked,
            Some(false) => Framing::Eof,
            None if bad_length => return Err("invalid Content-Length".into()),
            None => content_length.map_or(Framing::Eof, Framing::Length),
        },
    };
    Ok(Head {
        minor,
        code,
        framing,
    })
}

/// Decodes a chunked body incrementally (RFC 9112 §7.1), up to the last chunk.
#[derive(Debug, Clone, Default)]
pub struct Chunked {
    state: State,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// In the chunk size: its value so far and how many digits.
    #[default]
    SizeStart,
    Size(u64, u8),
    /// Whitespace after the size.
    SizeWs(u64),
    /// In a chunk extension: the size, and the extension's length so far.
    Ext(u64, usize),
    /// CR of the size line seen.
    SizeLf(u64),
    /// This much chunk data to go.
    Data(u64),
    /// After the data: CR or LF.
    DataEnd,
    /// CR after the data seen.
    DataLf,
    /// The last chunk's size line is complete.
    Done,
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// The body would exceed the limit.
    TooLarge,
    /// Malformed framing.
    Bad(String),
}

impl Chunked {
    /// Whether the last chunk has been read (the body is complete).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input` (the next bytes of the message), appending chunk data to `out`
    /// while it stays within `limit` bytes; returns how many bytes of `input` were
    /// used (all of them unless the body ended inside `input`).
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, ChunkError> {
        let bad = |what: &str| Err(ChunkError::Bad(what.to_string()));
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Done => return Ok(i),
                State::SizeStart => match hex(b) {
                    Some(d) => State::Size(d, 1),
                    None => return bad("bad chunk size"),
                },
                State::Size(n, digits) => match (hex(b), b) {
                    (Some(_), _) if digits >= MAX_CHUNK_SIZE_DIGITS => {
                        return bad("bad chunk size")
                    }
                    (Some(d), _) => State::Size(n << 4 | d, digits + 1),
                    (None, b' ' | b'\t') => State::SizeWs(n),
                    (None, b';') => State::Ext(n, 0),
                    (None, b'\r') => State::SizeLf(n),
                    (None, b'\n') => self.after_size(n, out, limit)?,
                    _ => return bad("bad chunk size"),
                },
                State::SizeWs(n) => match b {
                    b' ' | b'\t' => State::SizeWs(n),
                    b';' => State::Ext(n, 0),
                    b'\r' => State::SizeLf(n),
                    b'\n' => self.after_size(n, out, limit)?,
                    _ => return bad("bad chunk size"),
                },
                State::Ext(n, len) => match b {
                    b'\r' => State::SizeLf(n),
                    b'\n' => self.after_size(n, out, limit)?,
                    _ if len >= MAX_CHUNK_EXT => return bad("chunk extension too long"),
                    _ => State::Ext(n, len + 1),
                },
                State::SizeLf(n) => match b {
                    b'\n' => self.after_size(n, out, limit)?,
                    _ => return bad("bad chunk size line"),
                },
                State::Data(rest) => {
                    let take = (input.len() - i).min(rest.min(usize::MAX as u64) as usize);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let rest = rest - take as u64;
                    self.state = if rest == 0 {
                        State::DataEnd
                    } else {
                        State::Data(rest)
                    };
                    continue;
                }
                State::DataEnd => match b {
                    b'\r' => State::DataLf,
                    b'\n' => State::SizeStart,
                    _ => return bad("no CRLF after chunk data"),
                },
                State::DataLf => match b {
                    b'\n' => State::SizeStart,
                    _ => return bad("no CRLF after chunk data"),
                },
            };
            i += 1;
        }
        Ok(i)
    }

    /// The size line of a chunk of `n` bytes is complete.
    fn after_size(&self, n: u64, out: &[u8], limit: usize) -> Result<State, ChunkError> {
        if n == 0 {
            return Ok(State::Done);
        }
        if n > (limit - out.len().min(limit)) as u64 {
            return Err(ChunkError::TooLarge);
        }
        Ok(State::Data(n))
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Head, String> {
        let mut scanned = 0;
        let end = head_end(s.as_bytes(), &mut scanned).expect("complete head");
        parse_head(&s.as_bytes()[..end])
    }

    #[test]
    fn requests() {
        assert_eq!(
            &*request("/ok", "192.0.2.1", false, false).unwrap(),
            b"GET /ok HTTP/1.0\r\nHost: 192.0.2.1\r\nUser-Agent: KeepAliveClient\r\n\r\n"
        );
        assert_eq!(
            &*request("/a?b=c#frag", "www.example:8080", true, true).unwrap(),
            b"GET /a?b=c HTTP/1.1\r\nHost: www.example:8080\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            &*request("/", "h", false, true).unwrap(),
            b"GET / HTTP/1.0\r\nHost: h\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n\r\n"
        );
        assert!(request("/", "a\r\nX-Evil: 1", false, false)
            .unwrap_err()
            .starts_with("invalid Host header"));
        assert!(request("/x y", "h", false, false).is_err());
    }

    #[test]
    fn request_targets() {
        for ok in [
            "/",
            "/a/b.html",
            "/a?b=c&d=/e?f",
            "/{\"json\":1}",
            "/%20x",
            "/é",
            "/a?q=ü",
            "/a#b c",
        ] {
            assert!(request_target(ok).is_ok(), "{ok:?} refused");
        }
        assert_eq!(request_target("/a#x").unwrap(), "/a");
        for bad in [
            "", "nope", "a/b", "/a b", "/a\r\n", "/a?b c", "/a`b", "/<", "#/a",
        ] {
            assert!(request_target(bad).is_err(), "{bad:?} accepted");
        }
        assert!(request_target(&format!("/{}", "a".repeat(70_000))).is_err());
    }

    #[test]
    fn head_end_across_reads() {
        let full = b"HTTP/1.0 200 OK\r\nA: b\r\n\r\nbody";
        // Fed byte by byte, the end is found exactly once, at the blank line.
        let mut scanned = 0;
        let mut found = None;
        for n in 0..=full.len() {
            if let Some(e) = head_end(&full[..n], &mut scanned) {
                found = Some((n, e));
                break;
            }
            assert!(scanned <= n);
        }
        assert_eq!(found, Some((25, 25)));
        let mut s = 0;
        assert_eq!(head_end(b"HTTP/1.0 200 OK\n\nx", &mut s), Some(17));
        let mut s = 0;
        assert_eq!(head_end(b"HTTP/1.0 200 OK\nA: b\n\r\n", &mut s), Some(23));
        let mut s = 0;
        assert_eq!(head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n", &mut s), None);
        assert_eq!(head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n\r", &mut s), None);
        assert_eq!(
            head_end(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n", &mut s),
            Some(25)
        );
        let mut s = 0;
        assert_eq!(head_end(b"", &mut s), None);
    }

    #[test]
    fn status_lines() {
        let h = head("HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert_eq!((h.minor, h.code, h.framing), (0, 200, Framing::Eof));
        assert_eq!(
            head("HTTP/1.1 503 Service Unavailable\r\n\r\n")
                .unwrap()
                .code,
            503
        );
        assert_eq!(head("HTTP/1.1 404\r\n\r\n").unwrap().code, 404);
        assert_eq!(head("HTTP/1.1 200 \r\n\r\n").unwrap().code, 200);
        assert_eq!(head("HTTP/1.1 999 odd\n\n").unwrap().code, 999);
        assert_eq!(head("HTTP/1.1 200 tab\there\r\n\r\n").unwrap().code, 200);
        for bad in [
            "\r\n\r\n",
            "HTTP/1.1\r\n\r\n",
            "HTTP/1.1 \r\n\r\n",
            "HTTP/1.1 20\r\n\r\n",
            "HTTP/1.1 2000 x\r\n\r\n",
            "HTTP/1.1 099 x\r\n\r\n",
            "HTTP/1.1 2x0 x\r\n\r\n",
            "HTTP/1.1  200 x\r\n\r\n",
            "HTTP/1.2 200 x\r\n\r\n",
            "HTTP/2 200\r\n\r\n",
            "http/1.1 200 OK\r\n\r\n",
            "SSH-2.0-OpenSSH_9.6\r\n\r\n",
            "HTTP/1.1 200 O\x01K\r\n\r\n",
            "HTTP/1.1 200OK\r\n\r\n",
        ] {
            let e = head(bad).unwrap_err();
            assert!(e.starts_with("malformed status line `"), "{bad:?}: {e}");
        }
        // The excerpt is escaped and clipped.
        let e = head(&format!("\x1b[31m{}\r\n\r\n", "x".repeat(100))).unwrap_err();
        assert!(e.contains("\\x1b[31m") && e.ends_with("...`"), "{e}");
    }

    #[test]
    fn response_starts() {
        for ok in [
            "",
            "H",
            "HTTP/1",
            "HTTP/1.1 2",
            "HTTP/1.1 200 OK\r",
            "HTTP/1.1 200 OK\r\nX: y",
            "HTTP/1.0 404 Not Found\n",
        ] {
            assert_eq!(check_start(ok.as_bytes()), Ok(()), "{ok:?}");
        }
        for (bad, why) in [
            ("SSH-2.0-OpenSSH_9.6", "`SSH-2.0-OpenSSH_9.6`"),
            ("\x16\x03\x01", "`\\x16\\x03\\x01`"),
            ("HTTP/2 200\r\n", "`HTTP/2 200`"),
            ("HTTP/1.1 abc\r\n", "`HTTP/1.1 abc`"),
            ("\r\nHTTP/1.1 200 OK", "``"),
        ] {
            assert_eq!(
                check_start(bad.as_bytes()),
                Err(format!("malformed status line {why}")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headers_and_framing() {
        let f = |s: &str| head(s).map(|h| h.framing);
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length:7\r\nContent-Length: 7, 7\r\n\r\n"),
            Ok(Framing::Length(7))
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            Ok(Framing::Length(u64::MAX))
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked \r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Ok(Framing::Eof)
        );
        assert_eq!(f("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"), Ok(Framing::Eof));
        for code in ["204", "304", "101"] {
            assert_eq!(
                f(&format!("HTTP/1.1 {code} X\r\nContent-Length: 5\r\n\r\n")),
                Ok(Framing::Empty)
            );
        }
        let h = head("HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        assert!(h.is_interim());
        assert!(!head("HTTP/1.1 101 Switching\r\n\r\n").unwrap().is_interim());
        assert!(!head("HTTP/1.1 200 OK\r\n\r\n").unwrap().is_interim());
        for bad in ["abc", "", "-1", "+5", "1 2", "5, 6", "18446744073709551616"] {
            assert_eq!(
                f(&format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n")),
                Err("invalid Content-Length".into()),
                "{bad:?}"
            );
        }
        assert_eq!(
            f("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err("Transfer-Encoding in an HTTP/1.0 response".into())
        );
        for bad in [
            "no colon",
            ": empty name",
            "Bad Name: x",
            "Name : x",
            " folded: x",
            "X: a\x00b",
        ] {
            let e = f(&format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\n")).unwrap_err();
            assert!(e.starts_with("malformed header line"), "{bad:?}: {e}");
        }
    }

    fn dechunk(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let used = c.decode(input, &mut out, limit)?;
        Ok((out, used, c.is_done()))
    }

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        let (out, used, done) = dechunk(body, 100).unwrap();
        assert_eq!((out.as_slice(), done), (&b"hello world"[..], true));
        // Stops right after the last chunk's size line (trailers are not needed).
        assert_eq!(&body[used..], b"Trailer: x\r\n\r\n");
        // Upper-case hex, whitespace after the size, bare LFs.
        let (out, _, done) = dechunk(b"A \r\n0123456789\n0\n", 100).unwrap();
        assert_eq!((out.as_slice(), done), (&b"0123456789"[..], true));
        // Incomplete: not done, everything used.
        let (out, used, done) = dechunk(b"5\r\nhel", 100).unwrap();
        assert_eq!((out.as_slice(), used, done), (&b"hel"[..], 6, false));
        // The same body in every split gives the same result.
        for split in 0..body.len() {
            let mut c = Chunked::default();
            let mut out = Vec::new();
            let a = c.decode(&body[..split], &mut out, 100).unwrap();
            // Everything is used up to the end of the last chunk's size line (30).
            assert_eq!(a, split.min(30));
            c.decode(&body[a..], &mut out, 100).unwrap();
            assert!(c.is_done() && out == b"hello world", "split at {split}");
        }
    }

    #[test]
    fn bogus_chunks() {
        let bad = |input: &[u8]| match dechunk(input, 1 << 20) {
            Err(ChunkError::Bad(why)) => why,
            other => panic!("{:?}: {other:?}", input.escape_ascii().to_string()),
        };
        assert_eq!(bad(b"x\r\n"), "bad chunk size");
        assert_eq!(bad(b"\r\n"), "bad chunk size");
        assert_eq!(bad(b"-1\r\n"), "bad chunk size");
        assert_eq!(bad(b"5 x\r\n"), "bad chunk size");
        assert_eq!(bad(b"12345678901234567\r\n"), "bad chunk size");
        assert_eq!(bad(b"5\rx"), "bad chunk size line");
        assert_eq!(bad(b"2\r\nabc\r\n"), "no CRLF after chunk data");
        assert_eq!(bad(b"2\r\nab\rx"), "no CRLF after chunk data");
        let long = [b"1;".as_slice(), &[b'x'; MAX_CHUNK_EXT + 1]].concat();
        assert_eq!(bad(&long), "chunk extension too long");
        // Sizes over the limit (even 2^64 - 1) are refused before any data.
        assert_eq!(
            dechunk(b"ffffffffffffffff\r\n", 1 << 20),
            Err(ChunkError::TooLarge)
        );
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\n", 4), Err(ChunkError::TooLarge));
        assert!(dechunk(b"3\r\nabc\r\n1\r\nd\r\n0\r\n", 4).is_ok());
    }

    /// Arbitrary bytes never panic the parsers, and what they accept is consistent.
    #[test]
    fn fuzzish() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"HTTP/1.0 2\r\n:;-aZ9fF\t,chunkedContent-Length\x00\xff";
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut scanned = 0;
            if let Some(end) = head_end(&input, &mut scanned) {
                assert!(end <= input.len());
                let _ = parse_head(&input[..end]);
            }
            assert!(scanned <= input.len());
            let mut c = Chunked::default();
            let mut out = Vec::new();
            if let Ok(used) = c.decode(&input, &mut out, 64) {
                assert!(used <= input.len() && out.len() <= 64);
            }
        }
        // Valid heads with random status codes and lengths round-trip.
        for _ in 0..1000 {
            let code = 200 + (next() % 800) as u16;
            let len = next() % 1_000_000;
            let h = head(&format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {len}\r\n\r\n"
            ))
            .unwrap();
            assert_eq!(h.code, code);
            if ![204, 304].contains(&code) {
                assert_eq!(h.framing, Framing::Length(len));
            }
        }
    }
}
