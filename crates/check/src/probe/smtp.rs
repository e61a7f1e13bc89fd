//! SMTP_CHECK: connect, expect a `220` banner, send `HELO helo_name`, expect `250`,
//! send `QUIT`.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

use super::{short, tcp_connect, until, Probe};
use crate::sched::Outcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub helo_name: String,
}

/// Longest reply line read.
const MAX_LINE: usize = 4096;
/// Most lines in one (multi-line) reply.
const MAX_LINES: usize = 100;

/// Reads one reply (`250-...` lines up to `250 ...`); returns its code and first line.
/// Every line starts with the same three-digit code (RFC 5321 §4.2, §4.2.1); a reply
/// that does not is refused. Public only for the fuzz target
/// (fuzz/fuzz_targets/smtp_reply.rs).
#[doc(hidden)]
pub async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<(u16, String), String> {
    let mut first: Option<(u16, String)> = None;
    for _ in 0..MAX_LINES {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| short(&e))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let bad = || format!("bad reply `{}`", clip(&text));
        let code = match text.as_bytes() {
            [a, b, c, ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(bad()),
        };
        let (first_code, _) = first.get_or_insert_with(|| (code, text.clone()));
        if *first_code != code {
            return Err(bad());
        }
        match text.as_bytes().get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => return Ok(first.take().unwrap_or((code, text))),
            _ => return Err(bad()),
        }
    }
    Err("reply too long".into())
}

fn clip(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Smtp {
    pub async fn run(&self, p: &Probe) -> Outcome {
        match self.check(p).await {
            Ok(()) => Outcome::ok(),
            Err(e) => Outcome::fail(e),
        }
    }

    async fn check(&self, p: &Probe) -> Result<(), String> {
        let deadline = Instant::now() + p.timeout;
        let stream = until(deadline, "connect", tcp_connect(p)).await?;
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd);
        let expect = |stage: &'static str, want: u16, got: (u16, String)| {
            if got.0 == want {
                Ok(())
            } else {
                Err(format!("{stage}: expected {want}, got `{}`", clip(&got.1)))
            }
        };
        let banner = until(deadline, "banner", async {
            reply(&mut rd).await.map_err(|e| format!("banner: {e}"))
        })
        .await?;
        expect("banner", 220, banner)?;
        let helo = format!("HELO {}\r\n", self.helo_name);
        until(deadline, "HELO", async {
            wr.write_all(helo.as_bytes())
                .await
                .map_err(|e| format!("HELO: {}", short(&e)))?;
            reply(&mut rd).await.map_err(|e| format!("HELO: {e}"))
        })
        .await
        .and_then(|r| expect("HELO", 250, r))?;
        // QUIT is a courtesy: its reply does not decide anything.
        let _ = tokio::time::timeout_at(deadline, async {
            if wr.write_all(b"QUIT\r\n").await.is_ok() {
                let _ = reply(&mut rd).await;
            }
        })
        .await;
        Ok(())
    }
}

/// The default `helo_name`: this host's name.
pub fn default_helo_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(s: &str) -> Result<(u16, String), String> {
        reply(&mut BufReader::new(s.as_bytes())).await
    }

    #[tokio::test]
    async fn replies() {
        assert_eq!(
            parse("220 mx ready\r\n").await,
            Ok((220, "220 mx ready".into()))
        );
        assert_eq!(
            parse("250-mx\r\n250-SIZE 1\r\n250 OK\r\n").await,
            Ok((250, "250-mx".into()))
        );
        assert_eq!(parse("250\r\n").await.unwrap().0, 250);
        assert!(parse("").await.unwrap_err().contains("closed"));
        assert!(parse("hello\r\n").await.unwrap_err().contains("bad reply"));
        assert!(parse("250-a\r\n").await.unwrap_err().contains("closed"));
        assert!(!default_helo_name().is_empty());
    }

    /// Found by fuzz/fuzz_targets/smtp_reply.rs: a multi-line reply whose last line has
    /// another code (`250-...` then `420 ...`) was read as code 420 with the first
    /// line's text `250-...`. Every line must carry the same code; a sign or a space is
    /// not a digit.
    #[tokio::test]
    async fn codes_are_three_digits_and_the_same_on_every_line() {
        let found: &[u8] = b"250-mx.example.co\x00\x00\xa1\x00\x0050-PIPELINING\r\n250-S2 E 24480000\r\n420 4.250 8BITMIME\r\n";
        let r = reply(&mut BufReader::new(found)).await;
        assert!(r.as_ref().unwrap_err().contains("bad reply"), "{r:?}");
        assert!(parse("250-a\r\n220 b\r\n")
            .await
            .unwrap_err()
            .contains("bad reply"));
        assert!(parse("+12 ok\r\n").await.unwrap_err().contains("bad reply"));
        assert!(parse(" 25 ok\r\n").await.unwrap_err().contains("bad reply"));
        assert_eq!(parse("421-a\r\n421 b\r\n").await, Ok((421, "421-a".into())));
    }
}
