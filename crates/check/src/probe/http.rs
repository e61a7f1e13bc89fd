//! HTTP_GET and SSL_GET: one connection per `url`, `GET path`, then the status code,
//! the MD5 `digest` of the body and the `regex` are checked.
//!
//! SSL_GET, like keepalived without an `SSL { ca ... }` block, does **not** verify the
//! server's certificate: [`AcceptAnyCert`] accepts any chain and any name (the
//! handshake's signatures are still checked, so the peer must own the key of the
//! certificate it shows). A health check asks "does this server answer", not "is this
//! the server I think it is"; the real servers are usually addressed by IP and carry
//! certificates for the service's public name.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Request, Version};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{tcp_connect, until, Probe};
use crate::sched::Outcome;

/// The largest body read for `digest` / `regex`.
pub const MAX_BODY: usize = 4 << 20;

/// keepalived's User-Agent, kept so server-side filters and logs written for
/// keepalived's checks keep working.
pub const USER_AGENT_VALUE: &str = "KeepAliveClient";

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

#[derive(Debug, Clone)]
pub struct Http {
    pub urls: Vec<UrlCheck>,
    pub version: HttpVersion,
    /// SSL_GET: the TLS client configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SSL_GET `enable_sni`: send the virtual host as SNI.
    pub sni: bool,
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

/// The shared SSL_GET client configuration: ring, TLS 1.2 and 1.3, no certificate
/// verification, no client certificate.
pub fn insecure_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Http {
    pub async fn run(&self, p: &Probe) -> Outcome {
        for u in &self.urls {
            if let Err(e) = self.check_url(p, u).await {
                return Outcome::fail(if self.urls.len() > 1 {
                    format!("GET {}: {e}", u.path)
                } else {
                    e
                });
            }
        }
        Outcome::ok()
    }

    async fn check_url(&self, p: &Probe, u: &UrlCheck) -> Result<(), String> {
        let deadline = Instant::now() + p.timeout;
        let tcp = until(deadline, "connect", tcp_connect(p)).await?;
        match &self.tls {
            None => self.exchange(tcp, u, deadline).await,
            Some(config) => {
                let name = match (self.sni, ServerName::try_from(u.host.as_str())) {
                    (true, Ok(ServerName::DnsName(d))) => ServerName::DnsName(d.to_owned()),
                    // No SNI: rustls sends none for an IP address.
                    _ => ServerName::IpAddress(p.target.ip().into()),
                };
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = until(deadline, "TLS handshake", async {
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake: {}", super::short(&e)))
                })
                .await?;
                self.exchange(tls, u, deadline).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S, u: &UrlCheck, deadline: Instant) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = until(deadline, "HTTP handshake", async {
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP: {e}"))
        })
        .await?;
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let mut req = Request::builder()
            .uri(u.path.as_str())
            .header(HOST, u.host.as_str())
            .header(USER_AGENT, USER_AGENT_VALUE);
        req = match self.version {
            HttpVersion::V10 => req.version(Version::HTTP_10),
            HttpVersion::V10Close => req.version(Version::HTTP_10).header(CONNECTION, "close"),
            HttpVersion::V11 => req.version(Version::HTTP_11).header(CONNECTION, "close"),
        };
        let req = req
            .body(Empty::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = until(deadline, "response", async {
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("response: {e}"))
        })
        .await?;
        let code = resp.status().as_u16();
        if !u.status.contains(code) {
            return Err(format!("HTTP status {code} not in {}", u.status));
        }
        if u.digest.is_none() && u.regex.is_none() {
            return Ok(());
        }
        let body = until(deadline, "body", async {
            Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        format!("body: larger than {} MiB", MAX_BODY >> 20)
                    } else {
                        format!("body: {e}")
                    }
                })
        })
        .await?;
        if let Some(want) = &u.digest {
            let got = hex(&Md5::digest(&body));
            if &got != want {
                return Err(format!("digest mismatch: got {got}, want {want}"));
            }
        }
        if let Some(re) = &u.regex {
            match (re.is_match(&body), u.regex_no_match) {
                (false, false) => return Err(format!("regex `{}` did not match", re.as_str())),
                (true, true) => {
                    return Err(format!("regex `{}` matched (regex_no_match)", re.as_str()))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
