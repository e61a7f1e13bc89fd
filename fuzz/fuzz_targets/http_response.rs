//! HTTP_GET / SSL_GET's response codec (`probe::http::wire`), fed the way the probe
//! reads a socket: in pieces. The head end is searched incrementally (`head_end` with
//! its `scanned` cursor), the start of a response is checked before its head is
//! complete (`check_start`), the head is parsed (`parse_head`), interim 1xx responses
//! are skipped, and a chunked body is decoded piece by piece (`Chunked::decode`).
//!
//! Input: one byte giving the read size (1..=256 bytes), one giving the body limit
//! (in 64-byte steps), then the bytes the server sends. Properties checked: the
//! incremental head search finds what a one-shot search finds, and a chunked body
//! decoded in pieces equals the same body decoded at once, within the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd_check::probe::http::wire::{self, ChunkError, Chunked, Framing, MAX_HEAD};

fn chunked_at_once(body: &[u8], limit: usize) -> (Result<usize, ChunkError>, Vec<u8>, bool) {
    let mut d = Chunked::default();
    let mut out = Vec::new();
    let r = d.decode(body, &mut out, limit);
    (r, out, d.is_done())
}

fuzz_target!(|data: &[u8]| {
    let [step, limit, stream @ ..] = data else {
        return;
    };
    let step = usize::from(*step) + 1;
    let limit = usize::from(*limit) * 64;
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut scanned = 0;
    let mut status_line_seen = false;
    let (head, end) = loop {
        if let Some(end) = wire::head_end(&buf, &mut scanned) {
            let mut from_zero = 0;
            assert_eq!(wire::head_end(&buf, &mut from_zero), Some(end));
            assert!(end <= buf.len() && buf[end - 1] == b'\n');
            match wire::parse_head(&buf[..end]) {
                Err(_) => return,
                Ok(h) if h.is_interim() => {
                    assert_eq!(h.framing, Framing::Empty);
                    buf.drain(..end);
                    (scanned, status_line_seen) = (0, false);
                    continue;
                }
                Ok(h) => break (h, end),
            }
        }
        assert!(scanned <= buf.len());
        if !status_line_seen && !buf.is_empty() {
            if wire::check_start(&buf).is_err() {
                return;
            }
            status_line_seen = buf.contains(&b'\n');
        }
        if buf.len() > MAX_HEAD || fed == stream.len() {
            let mut from_zero = 0;
            assert_eq!(wire::head_end(&buf, &mut from_zero), None);
            return;
        }
        let n = step.min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
    };
    assert!((100..1000).contains(&head.code) && head.minor <= 1);
    if head.framing != Framing::Chunked {
        return;
    }
    buf.drain(..end);
    buf.extend_from_slice(&stream[fed..]);
    let (whole, whole_out, whole_done) = chunked_at_once(&buf, limit);
    let mut d = Chunked::default();
    let mut out = Vec::new();
    let mut pos = 0;
    let piecewise = loop {
        let piece = &buf[pos..(pos + step).min(buf.len())];
        match d.decode(piece, &mut out, limit) {
            Err(e) => break Err(e),
            Ok(used) => {
                assert!(used <= piece.len());
                pos += used;
                if d.is_done() || used < piece.len() || pos == buf.len() {
                    break Ok(pos);
                }
            }
        }
    };
    assert!(out.len() <= limit, "body {} over limit {limit}", out.len());
    assert_eq!(
        piecewise.is_ok(),
        whole.is_ok(),
        "{piecewise:?} vs {whole:?}"
    );
    if let (Ok(p), Ok(w)) = (&piecewise, &whole) {
        assert_eq!((p, &out, d.is_done()), (w, &whole_out, whole_done));
    }
});
