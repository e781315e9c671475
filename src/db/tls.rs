//! TLS with libpq's `sslmode` semantics, on rustls.
//!
//! | sslmode | encrypts | checks the CA | checks the host name |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `allow` | only when the server refuses plaintext | if a root certificate is available | no |
//! | `prefer` | when the server offers TLS | if a root certificate is available | no |
//! | `require` | always | if a root certificate is available (libpq's rule) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! A root certificate is available when `sslrootcert` names a file, is `system` (the
//! operating system's trust store; then only `verify-full` is allowed, as in libpq), or when
//! `~/.postgresql/root.crt` exists. Client certificates come from `sslcert`/`sslkey` or
//! `~/.postgresql/postgresql.crt`/`.key`; revocation lists from `sslcrl` or
//! `~/.postgresql/root.crl`.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use serde::Serialize;
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect};

use super::error::{Stage, StageCell};
use super::DbError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS if the server refuses that.
    Allow,
    /// TLS if the server offers it, else plaintext (libpq's default).
    Prefer,
    /// TLS always; the certificate is checked only if a root certificate is available.
    Require,
    /// TLS always; the certificate must chain to a trusted CA.
    VerifyCa,
    /// TLS always; CA and host name are checked.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A word that is not one of libpq's sslmodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an sslmode (disable, allow, prefer, require, verify-ca, verify-full)")]
pub struct UnknownSslMode(pub String);

impl FromStr for SslMode {
    type Err = UnknownSslMode;
    fn from_str(s: &str) -> Result<SslMode, UnknownSslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(UnknownSslMode(other.to_string())),
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file (one or more certificates).
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`).
    System,
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCert::File(p) => write!(f, "{}", p.display()),
            RootCert::System => f.write_str("the system trust store"),
        }
    }
}

/// What was checked about the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Nothing: encrypted, but the server is not authenticated.
    None,
    /// The chain up to a trusted CA, not the host name.
    Ca,
    /// The chain and the host name.
    Full,
}

/// The resolved TLS settings of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// Trusted CAs, if any.
    pub rootcert: Option<RootCert>,
    /// Client certificate (PEM chain).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
    /// Certificate revocation list (PEM).
    pub crl: Option<PathBuf>,
    /// Send the host name in SNI (`sslsni`, default on).
    pub sni: bool,
}

impl TlsSettings {
    /// What will be checked about the server's certificate, once encrypted.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Ca,
            _ if self.rootcert.is_some() => Verification::Ca,
            _ => Verification::None,
        }
    }

    /// Builds the rustls configuration, reading the certificate files now (so a rotated file
    /// is picked up by the next connection).
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, DbError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| DbError::Tls(format!("TLS setup failed: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.verification() {
            Verification::None => Arc::new(NoVerification(provider.clone())),
            v => {
                let roots = self.roots()?;
                let mut b = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider);
                if let Some(crl) = &self.crl {
                    b = b.with_crls(load_crls(crl)?);
                }
                let inner = b
                    .build()
                    .map_err(|e| DbError::Tls(format!("TLS setup failed: {e}")))?;
                if v == Verification::Full {
                    inner
                } else {
                    Arc::new(CaOnly(inner))
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &self.cert {
            Some(cert) => {
                let key = self.key.as_ref().ok_or_else(|| {
                    DbError::Tls(format!(
                        "client certificate {} has no key: set sslkey",
                        cert.display()
                    ))
                })?;
                let chain = load_certs(cert, "sslcert")?;
                let key = load_key(key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    DbError::Tls(format!(
                        "client certificate {} and key do not fit together: {e}",
                        cert.display()
                    ))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = self.sni;
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, DbError> {
        let mut roots = RootCertStore::empty();
        match &self.rootcert {
            Some(RootCert::File(path)) => {
                for cert in load_certs(path, "sslrootcert")? {
                    roots.add(cert).map_err(|e| {
                        DbError::Tls(format!(
                            "sslrootcert {}: unusable certificate: {e}",
                            path.display()
                        ))
                    })?;
                }
            }
            Some(RootCert::System) => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(DbError::Tls(
                        "sslrootcert=system: the system trust store has no usable certificate"
                            .into(),
                    ));
                }
            }
            None => {
                return Err(DbError::Tls(format!(
                    "sslmode={} needs trusted CA certificates: set sslrootcert to a file (or to \
                     `system`), create ~/.postgresql/root.crt, or use sslmode=require to encrypt \
                     without verifying the server",
                    self.mode
                )))
            }
        }
        Ok(roots)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, DbError> {
    std::fs::read(path)
        .map_err(|e| DbError::Tls(format!("cannot read {what} {}: {e}", path.display())))
}

/// Every PEM object of type `T` in the file at `path` (`what` names the setting, `kind` the
/// object, for messages); none is an error.
fn load_pem<T: PemObject>(path: &Path, what: &str, kind: &str) -> Result<Vec<T>, DbError> {
    let bytes = read(path, what)?;
    let items = T::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            DbError::Tls(format!(
                "{what} {}: not a PEM {kind} file: {e}",
                path.display()
            ))
        })?;
    if items.is_empty() {
        return Err(DbError::Tls(format!(
            "{what} {}: no PEM {kind} found",
            path.display()
        )));
    }
    Ok(items)
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, DbError> {
    load_pem(path, what, "certificate")
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, DbError> {
    load_pem(path, "sslcrl", "CRL")
}

/// Reads the client key, refusing files others can read (libpq's rule: at most 0600 when
/// owned by us, at most 0640 when owned by root).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, DbError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| DbError::Tls(format!("cannot read sslkey {}: {e}", path.display())))?;
    let mode = meta.mode();
    let too_open = if meta.uid() == 0 {
        mode & 0o037 != 0
    } else {
        mode & 0o077 != 0
    };
    if too_open {
        return Err(DbError::Tls(format!(
            "private key file {} has group or world access; it must have permissions u=rw (0600) \
             or less if owned by the current user, or u=rw,g=r (0640) or less if owned by root",
            path.display()
        )));
    }
    let bytes = read(path, "sslkey")?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        DbError::Tls(format!(
            "sslkey {}: no unencrypted PEM private key found ({e})",
            path.display()
        ))
    })
}

/// Encrypts without authenticating the server (libpq's `require` without a root certificate).
/// Handshake signatures are still checked, so the session key belongs to the presented
/// certificate.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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

/// Checks the chain but not the host name (`verify-ca`).
#[derive(Debug)]
struct CaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The negotiated TLS session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub protocol: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// What the handshake left behind, read after `connect_raw` returns.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) session: Option<TlsInfo>,
    /// A readable reason when the handshake failed.
    pub(crate) failure: Option<String>,
}

/// A tokio-postgres TLS connector over rustls that records the session and a readable
/// failure reason.
pub(crate) struct Connector {
    /// `None` when TLS is off for this attempt (then tokio-postgres never calls `connect`).
    pub(crate) config: Option<Arc<ClientConfig>>,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) settings: TlsSettings,
    pub(crate) stage: StageCell,
    pub(crate) outcome: Arc<Mutex<Outcome>>,
}

impl<S> TlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream<S>, io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.stage.set(Stage::TlsHandshake);
            let Some(config) = self.config else {
                return Err(io::Error::other("TLS is off for this connection attempt"));
            };
            let name = self.server_name.clone();
            let result = tokio_rustls::TlsConnector::from(config)
                .connect(self.server_name, stream)
                .await;
            let mut outcome = self
                .outcome
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match result {
                Ok(s) => {
                    let conn = s.get_ref().1;
                    outcome.session = Some(TlsInfo {
                        protocol: match conn.protocol_version() {
                            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                            Some(other) => format!("{other:?}"),
                            None => "unknown".into(),
                        },
                        cipher: conn
                            .negotiated_cipher_suite()
                            .map(|c| format!("{:?}", c.suite()))
                            .unwrap_or_default(),
                    });
                    self.stage.set(Stage::Authentication);
                    Ok(TlsStream(s))
                }
                Err(e) => {
                    outcome.failure = Some(explain(&e, &self.settings, &name));
                    Err(e)
                }
            }
        })
    }
}

/// A readable reason for a failed handshake.
fn explain(e: &io::Error, settings: &TlsSettings, name: &ServerName<'_>) -> String {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake failed: {e}");
    };
    let roots = settings
        .rootcert
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "sslrootcert".into());
    let host = name.to_str();
    match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not signed by a CA in {roots} (sslmode={})",
                settings.mode
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate is not valid for the host name `{host}` \
                     (sslmode=verify-full checks the name; verify-ca only the CA)"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)".into()
            }
            CertificateError::Revoked => {
                "the server's certificate is revoked by the sslcrl list".into()
            }
            CertificateError::UnknownRevocationStatus => {
                "the revocation status of the server's certificate is unknown: sslcrl lacks a \
                 CRL of its issuer"
                    .into()
            }
            other => format!("the server's certificate was rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("the server aborted the TLS handshake (alert: {alert:?}); check the client certificate and the server's ssl settings")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// A TLS session over the connection's socket.
pub(crate) struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    /// `tls-server-end-point` (RFC 5929): a hash of the server certificate, with the hash of
    /// its signature algorithm (SHA-256 for MD5 and SHA-1). Unknown algorithms give no channel
    /// binding, as the server then cannot compute it either.
    fn channel_binding(&self) -> ChannelBinding {
        let cert = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        match cert.and_then(|c| end_point_hash(c.as_ref())) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// The certificate hash for `tls-server-end-point`, if its signature algorithm is known.
pub(crate) fn end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    const RSA: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    let oid = signature_oid(der)?;
    let hash = match oid {
        o if o == ECDSA_SHA1 => 256,
        o if o.len() == 9 && o[..8] == RSA => match o[8] {
            0x04 | 0x05 | 0x0b => 256,
            0x0c => 384,
            0x0d => 512,
            0x0e => 224,
            _ => return None,
        },
        o if o.len() == 8 && o[..7] == ECDSA => match o[7] {
            0x01 => 224,
            0x02 => 256,
            0x03 => 384,
            0x04 => 512,
            _ => return None,
        },
        _ => return None,
    };
    Some(match hash {
        224 => sha2::Sha224::digest(der).to_vec(),
        256 => sha2::Sha256::digest(der).to_vec(),
        384 => sha2::Sha384::digest(der).to_vec(),
        _ => sha2::Sha512::digest(der).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm` (DER: SEQUENCE { tbs, AlgorithmIdentifier, … }).
fn signature_oid(der: &[u8]) -> Option<&[u8]> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, after_tbs) = tlv(cert)?;
    let (tag, alg, _) = tlv(after_tbs)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = tlv(alg)?;
    (tag == 0x06).then_some(oid)
}

/// One DER element: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_parses_libpq_words() {
        for m in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert_eq!(m.parse::<SslMode>().unwrap().as_str(), m);
        }
        assert!("verify_full".parse::<SslMode>().is_err());
    }

    #[test]
    fn verification_follows_libpq() {
        let mut s = TlsSettings {
            mode: SslMode::Require,
            rootcert: None,
            cert: None,
            key: None,
            crl: None,
            sni: true,
        };
        assert_eq!(s.verification(), Verification::None);
        s.rootcert = Some(RootCert::File("/ca.pem".into()));
        assert_eq!(s.verification(), Verification::Ca);
        s.mode = SslMode::VerifyFull;
        assert_eq!(s.verification(), Verification::Full);
    }

    #[test]
    fn end_point_hash_uses_the_signature_hash() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().as_ref();
        assert_eq!(
            end_point_hash(der).unwrap(),
            sha2::Sha384::digest(der).to_vec()
        );
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().as_ref();
        assert_eq!(
            end_point_hash(der).unwrap(),
            sha2::Sha256::digest(der).to_vec()
        );
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert!(end_point_hash(cert.der().as_ref()).is_none());
        assert!(end_point_hash(&[0x30, 0x05, 0x01]).is_none());
    }
}
