//! HTTPS on the HTTP listener: the certificate and key from `api.tls.*`, held behind a lock so
//! that SIGHUP can swap them while connections stay open. A handshake takes the certificate
//! current at that moment; established connections keep theirs. The relay listener
//! (`relay.tls.*`) loads its certificate the same way; errors name the settings they came from.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key could not be loaded. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{section}: cannot read {what} file {path}: {reason}")]
    File { section: &'static str, what: &'static str, path: PathBuf, reason: String },
    #[error("{section}: the private key in {key} does not belong to the certificate in {cert}: {reason}")]
    Mismatch { section: &'static str, cert: PathBuf, key: PathBuf, reason: String },
    #[error("{section}: cannot build the TLS configuration: {reason}")]
    Config { section: &'static str, reason: String },
}

/// The settings the API listener's files come from, for error messages.
pub const API_TLS: &str = "api.tls";

fn file_error(section: &'static str, what: &'static str, path: &Path, e: pem::Error) -> TlsError {
    // pem::Error can quote a line of the file; say what went wrong without it.
    let reason = match e {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => format!("no PEM {what} found"),
        _ => format!("not a valid PEM {what}"),
    };
    TlsError::File { section, what, path: path.to_path_buf(), reason }
}

/// Reads the PEM certificate chain and private key, and checks they belong together. `section`
/// names the settings (`api.tls`, `relay.tls`) in errors.
pub fn load_certified_key(section: &'static str, cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(section, "certificate", cert_file, e))?;
    if certs.is_empty() {
        return Err(file_error(section, "certificate", cert_file, pem::Error::NoItemsFound));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| file_error(section, "private key", key_file, e))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::File {
        section,
        what: "private key",
        path: key_file.to_path_buf(),
        reason: format!("unsupported key ({e})"),
    })?;
    let certified = CertifiedKey::new(certs, signing_key);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        section,
        cert: cert_file.to_path_buf(),
        key: key_file.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}

/// The listener's certificate: loaded at start-up, replaced by `reload` (SIGHUP).
#[derive(Debug)]
pub struct ReloadingCert {
    section: &'static str,
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Loads the files once; an error here is a start-up error. `section` names the settings.
    pub fn load(section: &'static str, cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, TlsError> {
        let key = load_certified_key(section, cert_file, key_file)?;
        Ok(Arc::new(ReloadingCert {
            section,
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = Arc::new(load_certified_key(self.section, &self.cert_file, &self.key_file)?);
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = key;
        Ok(())
    }

    /// The certificate file's path, for log lines.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// A rustls server configuration whose certificate is whatever `self` holds at handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config { section: self.section, reason: e.to_string() })?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_garbage_files_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nSECRETSTUFF!!\n-----END CERTIFICATE-----\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (cert, key) in [(&missing, &garbage), (&garbage, &garbage)] {
            let err = load_certified_key(API_TLS, cert, key).unwrap_err().to_string();
            assert!(err.contains(&cert.display().to_string()), "{err}");
            assert!(!err.contains("SECRETSTUFF"), "{err}");
        }
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = load_certified_key("relay.tls", &empty, &empty).unwrap_err().to_string();
        assert!(
            err.starts_with("relay.tls: ") && err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
    }
}
