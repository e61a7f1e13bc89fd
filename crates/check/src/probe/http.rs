//! HTTP_GET and SSL_GET: one connection per `url`, `GET path`, then the status code,
//! the MD5 `digest` of the body and the `regex` are checked.
//!
//! The HTTP/1.x exchange is our own codec ([`wire`]: request bytes computed once per
//! URL, the head parsed in place, the body framed by Content-Length, chunked or the
//! close), for CPU: a probe is one `connect`, one `send`, usually one `recv` and a
//! close, under one timer for the whole exchange.
//!
//! SSL_GET, like keepalived without an `SSL { ca ... }` block, does **not** verify the
//! server's certificate: [`AcceptAnyCert`] accepts any chain and any name (the
//! handshake's signatures are still checked, so the peer must own the key of the
//! certificate it shows). A health check asks "does this server answer", not "is this
//! the server I think it is"; the real servers are usually addressed by IP and carry
//! certificates for the service's public name.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{close_after_peer, short, tcp_connect_first, Probe};
use crate::sched::Outcome;
use wire::{ChunkError, Chunked, Framing, MAX_HEAD};

pub mod wire;

pub use wire::USER_AGENT_VALUE;

/// The largest body read for `digest` / `regex`.
pub const MAX_BODY: usize = 4 << 20;

/// The first read buffer of an exchange (most response heads fit).
const READ_BUF: usize = 2048;

/// `http_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// `GET ... HTTP/1.0` (keepalived's default).
    V10,
    /// `1.0C`: HTTP/1.0 with `Connection: close`.
    V10Close,
    /// `GET ... HTTP/1.1` with `Connection: close`.
    V11,
}

/// An HTTP_GET / SSL_GET probe: built with [`Http::new`], which computes each URL's
/// request bytes once.
#[derive(Debug, Clone)]
pub struct Http {
    urls: Vec<UrlCheck>,
    version: HttpVersion,
    tls: Option<Arc<rustls::ClientConfig>>,
    sni: bool,
    /// Each URL's request, or why it cannot be sent (a path or Host header that is not
    /// valid on the wire; the config refuses such paths before).
    requests: Box<[Result<Box<[u8]>, String>]>,
}

#[derive(Debug, Clone)]
pub struct UrlCheck {
    pub path: String,
    /// The Host header.
    pub host: String,
    pub status: StatusCodes,
    /// Lowercase hex MD5 of the body.
    pub digest: Option<String>,
    pub regex: Option<regex::bytes::Regex>,
    /// `regex_no_match`: the check fails when the regex matches.
    pub regex_no_match: bool,
    /// Where in the body a match may start.
    pub regex_limits: RegexLimits,
    /// SSL_GET `tls_compliant`: end the TLS session with close_notify. Without it the
    /// connection is closed quietly, as keepalived does by default.
    pub tls_compliant: bool,
}

/// Where a `regex` match may start: `regex_min_offset`, `regex_max_offset` and the
/// `firstline` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegexLimits {
    /// The search starts here (`^` and `\b` still see what comes before).
    pub min_offset: usize,
    /// A match must start at or before this offset.
    pub max_offset: Option<usize>,
    /// `firstline`: a match must start at or before the body's first newline.
    pub first_line: bool,
}

impl RegexLimits {
    /// Whether `re` has a match in `body` that starts within the limits. The leftmost
    /// match has the smallest start, so it alone decides.
    pub fn is_match(&self, re: &regex::bytes::Regex, body: &[u8]) -> bool {
        if self.min_offset > body.len() {
            return false;
        }
        let Some(m) = re.find_at(body, self.min_offset) else {
            return false;
        };
        let mut last = self.max_offset.unwrap_or(usize::MAX);
        if self.first_line {
            if let Some(nl) = body.iter().position(|&b| b == b'\n') {
                last = last.min(nl);
            }
        }
        m.start() <= last
    }
}

/// `status_code 200-299 301`: a list of codes and inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(pub Vec<(u16, u16)>);

impl Default for StatusCodes {
    /// keepalived's default, 200-299.
    fn default() -> Self {
        StatusCodes(vec![(200, 299)])
    }
}

impl StatusCodes {
    pub fn parse(s: &str) -> Result<StatusCodes, String> {
        let code = |w: &str| -> Result<u16, String> {
            match w.parse::<u16>() {
                Ok(c) if (100..=999).contains(&c) => Ok(c),
                _ => Err(format!("`{w}` is not an HTTP status code (100-999)")),
            }
        };
        let mut v = Vec::new();
        for w in s.split([' ', '\t', ',']).filter(|w| !w.is_empty()) {
            let (a, b) = match w.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => {
                    let c = code(w)?;
                    (c, c)
                }
            };
            if a > b {
                return Err(format!("`{w}`: empty range"));
            }
            v.push((a, b));
        }
        if v.is_empty() {
            return Err("no status code".into());
        }
        Ok(StatusCodes(v))
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&code))
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// The default Host header: the address, with the port unless it is the scheme's.
pub fn default_host(ip: IpAddr, port: u16, tls: bool) -> String {
    let host = match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    if port == if tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// A certificate verifier that accepts every certificate (see the module docs).
#[derive(Debug)]
pub struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// ring, TLS 1.2 and 1.3, no verification of the server's certificate.
fn unverified_client(
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
}

/// The shared SSL_GET client configuration: ring, TLS 1.2 and 1.3, no certificate
/// verification, no client certificate.
pub fn insecure_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| Arc::new(unverified_client().with_no_client_auth()))
        .clone()
}

/// SSL_GET's client configuration with a client certificate (the `SSL` block's
/// `certificate` and `key`) for servers that ask for one; the server's certificate is
/// still not verified. Fails when the key does not fit the certificate or its type is
/// not supported.
pub fn client_config_with_cert(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    Ok(Arc::new(
        unverified_client().with_client_auth_cert(chain, key)?,
    ))
}

/// Where an exchange is, for the reason of a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Tls,
    Request,
    Response,
    Body,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Tls => "TLS handshake",
            Stage::Request => "request",
            Stage::Response => "response",
            Stage::Body => "body",
        }
    }
}

impl Http {
    /// A plain HTTP_GET probe of `urls`.
    pub fn new(mut urls: Vec<UrlCheck>, version: HttpVersion) -> Http {
        // Kept for the probe's life, by every checker: no spare capacity.
        urls.shrink_to_fit();
        let (http11, close) = match version {
            HttpVersion::V10 => (false, false),
            HttpVersion::V10Close => (false, true),
            HttpVersion::V11 => (true, true),
        };
        let requests = urls
            .iter()
            .map(|u| wire::request(&u.path, &u.host, http11, close))
            .collect();
        Http {
            urls,
            version,
            tls: None,
            sni: false,
            requests,
        }
    }

    /// SSL_GET: TLS with `config`; `sni` sends the Host as SNI when it is a name.
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>, sni: bool) -> Http {
        self.tls = Some(config);
        self.sni = sni;
        self
    }

    pub fn urls(&self) -> &[UrlCheck] {
        &self.urls
    }

    pub fn version(&self) -> HttpVersion {
        self.version
    }

    /// SSL_GET's TLS configuration.
    pub fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// SSL_GET `enable_sni`.
    pub fn sni(&self) -> bool {
        self.sni
    }

    /// The bytes sent for URL `i`, or why they cannot be sent.
    pub fn request(&self, i: usize) -> Result<&[u8], &str> {
        match &self.requests[i] {
            Ok(r) => Ok(r),
            Err(e) => Err(e),
        }
    }

    pub async fn run(&self, p: &Probe) -> Outcome {
        for (u, req) in self.urls.iter().zip(self.requests.iter()) {
            if let Err(e) = self.check_url(p, u, req).await {
                return Outcome::fail(if self.urls.len() > 1 {
                    format!("GET {}: {e}", u.path)
                } else {
                    e
                });
            }
        }
        Outcome::ok()
    }

    /// One URL: a connection, the request, the response; `connect_timeout` bounds the
    /// whole exchange (one timer), and a timeout names the stage it interrupted.
    async fn check_url(
        &self,
        p: &Probe,
        u: &UrlCheck,
        req: &Result<Box<[u8]>, String>,
    ) -> Result<(), String> {
        let req = req.as_deref().map_err(|e| format!("request: {e}"))?;
        let deadline = Instant::now() + p.timeout;
        let mut stage = Stage::Connect;
        match tokio::time::timeout_at(deadline, self.exchange(p, u, req, &mut stage)).await {
            Ok(r) => r,
            Err(_) => Err(format!("{}: timed out", stage.name())),
        }
    }

    async fn exchange(
        &self,
        p: &Probe,
        u: &UrlCheck,
        req: &[u8],
        stage: &mut Stage,
    ) -> Result<(), String> {
        let Some(config) = &self.tls else {
            let (mut tcp, sent) = tcp_connect_first(p, req).await?;
            let r = talk(&mut tcp, u, &req[sent..], stage).await;
            close_after_peer(&tcp).await;
            return r;
        };
        // Boxed: a TLS session's state is several KB, and would otherwise size the
        // task of every plain HTTP_GET probe too (see `Probe::run`).
        Box::pin(self.exchange_tls(p, u, req, stage, config)).await
    }

    async fn exchange_tls(
        &self,
        p: &Probe,
        u: &UrlCheck,
        req: &[u8],
        stage: &mut Stage,
        config: &Arc<rustls::ClientConfig>,
    ) -> Result<(), String> {
        // The ClientHello carries the handshake's last ACK.
        let (tcp, _) = tcp_connect_first(p, &[]).await?;
        *stage = Stage::Tls;
        let name = match (self.sni, ServerName::try_from(u.host.as_str())) {
            (true, Ok(ServerName::DnsName(d))) => ServerName::DnsName(d.to_owned()),
            // No SNI: rustls sends none for an IP address.
            _ => ServerName::IpAddress(p.target.ip().into()),
        };
        let mut tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {}", short(&e)))?;
        let r = talk(&mut tls, u, req, stage).await;
        if u.tls_compliant {
            // The result is already known; the alert is only courtesy.
            let _ = tls.shutdown().await;
        }
        r
    }
}

/// Sends `req` (what of the request is still to send) and checks the response against
/// `u`. The head is read up to its end only; the body only when `digest` or `regex`
/// needs it.
async fn talk<S>(s: &mut S, u: &UrlCheck, req: &[u8], stage: &mut Stage) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    *stage = Stage::Request;
    if !req.is_empty() {
        s.write_all(req)
            .await
            .map_err(|e| format!("request: {}", short(&e)))?;
    }
    s.flush()
        .await
        .map_err(|e| format!("request: {}", short(&e)))?;

    *stage = Stage::Response;
    let mut buf = Vec::with_capacity(READ_BUF);
    let mut scanned = 0;
    let mut status_line_seen = false;
    let (head, end) = loop {
        if let Some(end) = wire::head_end(&buf, &mut scanned) {
            let head = wire::parse_head(&buf[..end]).map_err(|e| format!("response: {e}"))?;
            if head.is_interim() {
                // 100 Continue and friends: the real response follows.
                buf.drain(..end);
                (scanned, status_line_seen) = (0, false);
                continue;
            }
            break (head, end);
        }
        if !status_line_seen && !buf.is_empty() {
            wire::check_start(&buf).map_err(|e| format!("response: {e}"))?;
            status_line_seen = buf.contains(&b'\n');
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("response: head larger than {} KiB", MAX_HEAD >> 10));
        }
        let n = read_more(s, &mut buf, MAX_HEAD + 1)
            .await
            .map_err(|e| format!("response: {}", short(&e)))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "response: connection closed without a response".into()
            } else {
                format!(
                    "response: connection closed in the response head after {} bytes",
                    buf.len()
                )
            });
        }
    };
    if !u.status.contains(head.code) {
        return Err(format!("HTTP status {} not in {}", head.code, u.status));
    }
    if u.digest.is_none() && u.regex.is_none() {
        return Ok(());
    }

    *stage = Stage::Body;
    buf.drain(..end);
    let body = read_body(s, head.framing, buf).await?;
    if let Some(want) = &u.digest {
        let got = hex(&Md5::digest(&body));
        if &got != want {
            return Err(format!("digest mismatch: got {got}, want {want}"));
        }
    }
    if let Some(re) = &u.regex {
        match (u.regex_limits.is_match(re, &body), u.regex_no_match) {
            (false, false) => return Err(format!("regex `{}` did not match", re.as_str())),
            (true, true) => {
                return Err(format!("regex `{}` matched (regex_no_match)", re.as_str()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn too_large() -> String {
    format!("body: larger than {} MiB", MAX_BODY >> 20)
}

/// The body as framed by the head; `buf` holds what was read after the head.
async fn read_body<S>(s: &mut S, framing: Framing, mut buf: Vec<u8>) -> Result<Vec<u8>, String>
where
    S: AsyncRead + Unpin,
{
    let failed = |e: io::Error| format!("body: {}", short(&e));
    match framing {
        Framing::Empty => Ok(Vec::new()),
        Framing::Length(n) => {
            if n > MAX_BODY as u64 {
                return Err(too_large());
            }
            let n = n as usize;
            while buf.len() < n {
                if read_more(s, &mut buf, n).await.map_err(failed)? == 0 {
                    return Err(format!(
                        "body: connection closed after {} of {n} bytes",
                        buf.len()
                    ));
                }
            }
            buf.truncate(n);
            Ok(buf)
        }
        Framing::Eof => loop {
            if buf.len() > MAX_BODY {
                return Err(too_large());
            }
            if read_more(s, &mut buf, MAX_BODY + 1).await.map_err(failed)? == 0 {
                return Ok(buf);
            }
        },
        Framing::Chunked => {
            let mut chunked = Chunked::default();
            let mut body = Vec::new();
            let mut raw = buf;
            loop {
                chunked
                    .decode(&raw, &mut body, MAX_BODY)
                    .map_err(|e| match e {
                        ChunkError::TooLarge => too_large(),
                        ChunkError::Bad(why) => format!("body: {why}"),
                    })?;
                if chunked.is_done() {
                    return Ok(body);
                }
                raw.clear();
                let max = READ_BUF.max(raw.capacity());
                if read_more(s, &mut raw, max).await.map_err(failed)? == 0 {
                    return Err("body: connection closed before the last chunk".into());
                }
            }
        }
    }
}

/// Reads what is available into `buf`, which is kept within `max` bytes (growing it
/// as needed); 0 at the end of the stream. A TLS peer closing without close_notify
/// counts as the end of the stream (the framing decides whether that is complete).
async fn read_more<S>(s: &mut S, buf: &mut Vec<u8>, max: usize) -> io::Result<usize>
where
    S: AsyncRead + Unpin,
{
    let room = max.saturating_sub(buf.len());
    debug_assert!(room > 0);
    if buf.capacity() == buf.len() {
        buf.reserve(buf.len().max(READ_BUF).min(room));
    }
    match s.take(room as u64).read_buf(buf).await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        r => r,
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_limits() {
        let re = regex::bytes::Regex::new("wor.d|^hello").unwrap();
        let body = b"hello world\nworld again";
        let at = |min_offset, max_offset, first_line| {
            RegexLimits {
                min_offset,
                max_offset,
                first_line,
            }
            .is_match(&re, body)
        };
        assert!(at(0, None, false));
        // `^hello` cannot match from offset 1 (the anchor sees the context); `world`
        // at 6 can.
        assert!(at(1, Some(6), false));
        assert!(!at(1, Some(5), false));
        // From 7 on, the first match starts at 12, after the first line.
        assert!(at(7, None, false));
        assert!(!at(7, None, true));
        assert!(!at(7, Some(11), false));
        // Past the end: nothing.
        assert!(!at(body.len() + 1, None, false));
        assert!(at(0, None, true));
    }

    #[test]
    fn status_codes() {
        let s = StatusCodes::parse("200-299 301").unwrap();
        assert!(s.contains(200) && s.contains(250) && s.contains(299) && s.contains(301));
        assert!(!s.contains(300) && !s.contains(302) && !s.contains(199));
        assert_eq!(s.to_string(), "200-299 301");
        let s = StatusCodes::parse("200 400-499 503 505").unwrap();
        assert_eq!(s.0, [(200, 200), (400, 499), (503, 503), (505, 505)]);
        assert!(s.contains(404) && s.contains(505) && !s.contains(504));
        assert_eq!(StatusCodes::parse("204").unwrap().0, [(204, 204)]);
        assert_eq!(StatusCodes::default().to_string(), "200-299");
        assert!(StatusCodes::default().contains(204));
        assert!(!StatusCodes::default().contains(301));
        for bad in [
            "",
            "abc",
            "200-",
            "-200",
            "299-200",
            "99",
            "1000",
            "200-299-300",
        ] {
            assert!(StatusCodes::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn host_header_defaults() {
        assert_eq!(
            default_host("192.0.2.1".parse().unwrap(), 80, false),
            "192.0.2.1"
        );
        assert_eq!(
            default_host("192.0.2.1".parse().unwrap(), 8080, false),
            "192.0.2.1:8080"
        );
        assert_eq!(
            default_host("2001:db8::1".parse().unwrap(), 443, true),
            "[2001:db8::1]"
        );
        assert_eq!(
            default_host("2001:db8::1".parse().unwrap(), 80, true),
            "[2001:db8::1]:80"
        );
    }

    #[test]
    fn md5_hex() {
        assert_eq!(hex(&Md5::digest(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
