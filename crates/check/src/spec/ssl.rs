//! The top-level `SSL { }` block: the TLS client SSL_GET checkers use.
//!
//! As in keepalived, `certificate` and `key` give the client certificate presented to
//! real servers that ask for one, `password` is the key's, and `ca` is loaded (an
//! unreadable file stops the start) but server certificates are not verified with it.
//! Files are read once, when the checkers are built (start and reload).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use vipd_config::model::{SslContext, SslFile};

use super::SpecError;
use crate::probe::http;

/// The TLS client for `ssl`, or what is wrong with it (keyword, where, why).
pub(super) fn client_config(ssl: &SslContext) -> Result<Arc<rustls::ClientConfig>, SpecError> {
    if let Some(ca) = &ssl.ca {
        let pem = read(ca, "ca")?;
        certificates(&pem, ca, "ca")?;
        tracing::info!(
            "SSL ca {}: loaded; as in keepalived, SSL_GET does not verify real servers' certificates",
            ca.path
        );
    }
    let (cert, key) = match (&ssl.certificate, &ssl.key) {
        (None, None) => {
            if ssl.password.is_some() {
                tracing::warn!("SSL: `password` given without `key`; not used");
            }
            return Ok(http::insecure_client_config());
        }
        (Some(c), k) => (c, k.as_ref().unwrap_or(c)),
        // One PEM file may hold both.
        (None, Some(k)) => (k, k),
    };
    let cert_pem = read(cert, "certificate")?;
    let chain = certificates(&cert_pem, cert, "certificate")?;
    let key_pem = if key.path == cert.path {
        cert_pem
    } else {
        read(key, "key")?
    };
    let key_kw = if ssl.key.is_some() {
        "key"
    } else {
        "certificate"
    };
    if is_encrypted(&key_pem) {
        return Err(error(
            key,
            key_kw,
            format!(
                "{}: the private key is encrypted; vipd cannot decrypt it with `password` \
                 — store it decrypted (`openssl pkey -in {0} -out KEYFILE`, mode 0600) and \
                 name that file",
                key.path
            ),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key in it".to_string(),
            e => format!("not a PEM private key ({e})"),
        };
        let hint = if ssl.key.is_none() {
            " (and no `key` given)"
        } else {
            ""
        };
        error(key, key_kw, format!("{}: {why}{hint}", key.path))
    })?;
    if ssl.password.is_some() {
        tracing::warn!(
            "SSL: the key in {} is not encrypted; `password` not used",
            key.path
        );
    }
    http::client_config_with_cert(chain, private).map_err(|e| {
        error(
            key,
            key_kw,
            format!("{} does not fit {}: {e}", key.path, cert.path),
        )
    })
}

fn read(f: &SslFile, keyword: &str) -> Result<Vec<u8>, SpecError> {
    std::fs::read(Path::new(&f.path)).map_err(|e| error(f, keyword, format!("{}: {e}", f.path)))
}

/// The certificates of a PEM file: at least one.
fn certificates(
    pem: &[u8],
    f: &SslFile,
    keyword: &str,
) -> Result<Vec<CertificateDer<'static>>, SpecError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| error(f, keyword, format!("{}: not PEM ({e})", f.path)))?;
    if certs.is_empty() {
        return Err(error(
            f,
            keyword,
            format!("{}: no PEM certificate in it", f.path),
        ));
    }
    Ok(certs)
}

/// PKCS#8 `ENCRYPTED PRIVATE KEY` or a traditional OpenSSL key with `Proc-Type:
/// 4,ENCRYPTED`.
fn is_encrypted(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
}

fn error(f: &SslFile, keyword: &str, message: String) -> SpecError {
    SpecError {
        keyword: keyword.to_string(),
        span: f.span.clone(),
        message,
    }
}
