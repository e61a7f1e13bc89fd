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
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<(u16, String), String> {
    let mut first = None;
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
        let code = text
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("bad reply `{}`", clip(&text)))?;
        let first = first.get_or_insert_with(|| text.clone());
        match text.as_bytes().get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => return Ok((code, first.clone())),
            _ => return Err(format!("bad reply `{}`", clip(&text))),
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
}
