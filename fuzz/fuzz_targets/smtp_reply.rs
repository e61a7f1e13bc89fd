//! SMTP_CHECK's reply reader (`probe::smtp::reply`): one (multi-line) reply, its code
//! and first line, with the line and line-count limits. The reader is async over any
//! `AsyncBufRead`; an in-memory reader never waits, so one poll finishes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use vipd_check::probe::smtp;

fuzz_target!(|data: &[u8]| {
    let mut rd = tokio::io::BufReader::new(data);
    let mut fut = pin!(smtp::reply(&mut rd));
    let Poll::Ready(r) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("an in-memory reply never waits");
    };
    if let Ok((code, first)) = r {
        // RFC 5321 §4.2: a reply code is three digits.
        assert!(
            first.as_bytes()[..3].iter().all(u8::is_ascii_digit),
            "code of `{first}`"
        );
        assert_eq!(first[..3].parse::<u16>(), Ok(code));
        // The first line as read: up to its LF, within the line limit.
        let line = &data[..data.len().min(4096)];
        let line = &line[..line
            .iter()
            .position(|&b| b == b'\n')
            .map_or(line.len(), |i| i + 1)];
        assert_eq!(first, String::from_utf8_lossy(line).trim_end());
    }
});
