//! TLS towards the source with the MySQL client's modes:
//! `disabled`, `preferred` and `required` (encrypt, do not authenticate the server),
//! `verify_ca` (certificate chain must lead to the CA, any host name) and `verify_identity`
//! (chain and host name). The CA comes from `tls_ca_file`, else the bundled web PKI roots.
//!
//! `tls_ca_file` is API input: it is read only from the directory the operator configured
//! (`replication.tls_ca_dir`), and every way it can fail gives one message that names the file
//! name only, so the API cannot probe which files exist on this host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};

use crate::domain::TlsMode;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Where a task's `tls_ca_file` is looked up: `replication.tls_ca_dir` (`None`: not set).
#[derive(Debug, Clone, Copy)]
pub struct CaFile<'a> {
    pub dir: Option<&'a Path>,
    pub name: &'a str,
}

/// Builds the rustls configuration for a mode; `None` for `disabled`.
pub fn client_config(mode: TlsMode, ca_file: Option<CaFile<'_>>) -> Result<Option<Arc<ClientConfig>>, String> {
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TlsMode::Disabled => return Ok(None),
        TlsMode::Preferred | TlsMode::Required => Arc::new(NoVerification(provider())),
        TlsMode::VerifyCa | TlsMode::VerifyIdentity => {
            let roots = load_roots(ca_file)?;
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("cannot build certificate verifier: {e}"))?;
            if mode == TlsMode::VerifyCa { Arc::new(ChainOnly(inner)) } else { inner }
        }
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

fn load_roots(ca_file: Option<CaFile<'_>>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            let certs = ca_path(ca).and_then(|path| read_certs(&path)).ok_or_else(|| unusable(ca))?;
            for c in certs {
                roots.add(c).map_err(|_| unusable(ca))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// The real path of a CA file, only when it is a regular file inside the CA directory (after
/// resolving symlinks). A name relative to the directory is the documented form; an absolute
/// path inside it (tasks from before the directory existed) works too.
fn ca_path(ca: CaFile<'_>) -> Option<PathBuf> {
    let dir = ca.dir?.canonicalize().ok()?;
    let path = dir.join(ca.name).canonicalize().ok()?;
    (path.starts_with(&dir) && path != dir && path.is_file()).then_some(path)
}

fn read_certs(path: &Path) -> Option<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path).ok()?.collect::<Result<Vec<_>, _>>().ok()?;
    (!certs.is_empty()).then_some(certs)
}

/// The one answer for a CA file that cannot be used, whatever the reason: naming the file name
/// only, it tells nothing about what exists outside the CA directory.
fn unusable(ca: CaFile<'_>) -> String {
    let name = Path::new(ca.name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String = name.chars().take(64).collect();
    format!(
        "tls_ca_file {name:?} cannot be used: it must name a PEM file with at least one certificate in the \
         directory set by replication.tls_ca_dir"
    )
}

/// The name rustls checks the certificate against (an IP address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

/// `preferred`/`required`: encryption only, as the MySQL client does in these modes.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify_ca`: the full chain check of `WebPkiServerVerifier`, minus the host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(v) => Ok(v),
            Err(TlsError::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(TlsError::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_build_or_explain() {
        assert!(client_config(TlsMode::Disabled, None).unwrap().is_none());
        assert!(client_config(TlsMode::Required, None).unwrap().is_some());
        assert!(client_config(TlsMode::VerifyIdentity, None).unwrap().is_some());
        let nowhere = CaFile { dir: None, name: "/nonexistent/ca.pem" };
        let err = client_config(TlsMode::VerifyCa, Some(nowhere)).unwrap_err();
        assert!(err.contains("\"ca.pem\"") && !err.contains("/nonexistent"), "{err}");
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("db.example.com").is_ok());
    }

    #[test]
    fn ca_files_come_from_the_ca_directory_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ca");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "not PEM").unwrap();
        std::fs::write(root.path().join("outside.pem"), "x").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.pem"), dir.join("link.pem")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/in.pem"), "x").unwrap();
        let at = |name: &str| ca_path(CaFile { dir: Some(&dir), name });
        assert!(at("ca.pem").is_some());
        assert!(at("sub/in.pem").is_some(), "a path inside the directory");
        assert!(at(dir.join("ca.pem").to_str().unwrap()).is_some(), "an absolute path inside it");
        for refused in ["link.pem", "../outside.pem", "/etc/passwd", "missing.pem", "sub", "", "."] {
            assert!(at(refused).is_none(), "{refused:?} accepted");
        }
        assert!(ca_path(CaFile { dir: None, name: "ca.pem" }).is_none(), "no directory, no CA file");
        // Whatever the reason, one message, naming the file name only.
        let msg = |name: &str| load_roots(Some(CaFile { dir: Some(&dir), name })).unwrap_err();
        assert_eq!(msg("ca.pem"), msg("/etc/ca.pem"), "not PEM and outside the directory look alike");
        assert_eq!(msg("missing.pem").replace("missing", "ca"), msg("ca.pem"));
    }
}
