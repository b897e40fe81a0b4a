//! Outbound TLS for mcp-runtime's components, configured in one place: rustls with the ring
//! provider (no OpenSSL, no second crypto library), trusting the system's roots, or only given
//! CA files where a private CA is the sole authority (the Kubernetes API).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The connector every outbound HTTP client of mcp-runtime uses.
pub type Connector = HttpsConnector<HttpConnector>;

/// Why a TLS client could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    #[error(
        "CA file {path} holds no PEM certificate (expected `-----BEGIN CERTIFICATE-----` blocks)"
    )]
    EmptyCaFile { path: PathBuf },
    #[error("CA file {path}: certificate {index} is not usable: {message}")]
    BadCertificate {
        path: PathBuf,
        index: usize,
        message: String,
    },
    #[error("no trusted roots: the system has no CA certificates and no CA file was given")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Which certificate authorities a client trusts.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The operating system's roots (public endpoints: identity providers, ingest services).
    pub system_roots: bool,
    /// Extra PEM CA files (private CAs).
    pub ca_files: Vec<PathBuf>,
}

impl Trust {
    /// Trust exactly this CA (e.g. the cluster CA for the Kubernetes API).
    pub fn only(ca_file: impl Into<PathBuf>) -> Self {
        Self {
            system_roots: false,
            ca_files: vec![ca_file.into()],
        }
    }

    /// The system's roots plus an optional private CA.
    pub fn system_and(ca_file: Option<PathBuf>) -> Self {
        Self {
            system_roots: true,
            ca_files: ca_file.into_iter().collect(),
        }
    }
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::CaFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut count = 0;
    for (index, cert) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let cert = cert.map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            index,
            message: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            index,
            message: e.to_string(),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(TlsError::EmptyCaFile {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// A rustls client configuration trusting `trust`.
pub fn client_config(trust: &Trust) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    if trust.system_roots {
        // Unreadable individual system certificates are skipped, as every TLS client does.
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
    }
    for path in &trust.ca_files {
        add_ca_file(&mut roots, path)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A connector for `http://` and `https://` URLs (HTTP/1.1), with TCP keepalive so that a dead
/// peer on a long-lived stream is noticed.
pub fn connector(trust: &Trust) -> Result<Connector, TlsError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(30)));
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(client_config(trust)?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcp-runtime-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let err = client_config(&Trust::only("/nonexistent/ca.crt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_rejected() {
        let path = temp("empty.pem", b"not a certificate\n");
        let err = client_config(&Trust::only(&path)).unwrap_err();
        assert!(matches!(err, TlsError::EmptyCaFile { .. }), "{err}");
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
    }

    #[test]
    fn trusting_nothing_is_an_error() {
        let err = client_config(&Trust::default()).unwrap_err();
        assert!(matches!(err, TlsError::NoRoots), "{err}");
    }
}
