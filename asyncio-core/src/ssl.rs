//! Python's `ssl` module, the part asyncio programs use: [`SslContext`]
//! (`ssl.SSLContext`), [`create_default_context`], the verification modes
//! and versions, and the TLS errors — on rustls with the `ring` provider.
//!
//! ```
//! use asyncio_core::ssl::{self, Protocol, VerifyMode};
//! let ctx = ssl::SslContext::new(Protocol::TlsClient);
//! assert!(ctx.check_hostname());
//! assert_eq!(ctx.verify_mode(), VerifyMode::CertRequired);
//! ctx.set_check_hostname(false);
//! ctx.set_verify_mode(VerifyMode::CertNone)?;
//! # Ok::<(), asyncio_core::Error>(())
//! ```
//!
//! What has no rustls counterpart (SSLv3/TLS 1.0/1.1, `set_ciphers` with
//! OpenSSL cipher strings, `options` bits, session tickets by hand) is left
//! out; a ready [`rustls::ClientConfig`]/[`rustls::ServerConfig`] handed to
//! [`SslContext::from_client_config`] / [`SslContext::from_server_config`]
//! covers everything else rustls can do.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};

use crate::exceptions::{Error, Result};

pub use rustls;

/// `ssl.PROTOCOL_TLS_CLIENT` / `ssl.PROTOCOL_TLS_SERVER`: which side a
/// context is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `PROTOCOL_TLS_CLIENT`: hostname checking on, certificates required.
    TlsClient,
    /// `PROTOCOL_TLS_SERVER`: no client certificates asked for.
    TlsServer,
}

/// `ssl.CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// Clients: any server certificate is accepted. Servers: no client
    /// certificate is asked for.
    CertNone,
    /// Servers: a client certificate is asked for and verified if sent.
    /// (Clients treat it as `CertRequired`, as OpenSSL does.)
    CertOptional,
    /// The peer's certificate must be sent and verify.
    CertRequired,
}

/// `ssl.TLSVersion`: the versions rustls speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSVersion.MINIMUM_SUPPORTED` (TLS 1.2 here).
    MinimumSupported,
    /// `TLSVersion.TLSv1_2`.
    Tlsv1_2,
    /// `TLSVersion.TLSv1_3`.
    Tlsv1_3,
    /// `TLSVersion.MAXIMUM_SUPPORTED` (TLS 1.3 here).
    MaximumSupported,
}

impl TlsVersion {
    fn rank(self) -> u8 {
        match self {
            TlsVersion::MinimumSupported | TlsVersion::Tlsv1_2 => 2,
            TlsVersion::Tlsv1_3 | TlsVersion::MaximumSupported => 3,
        }
    }
}

/// `ssl.Purpose`: what [`create_default_context_for`] makes a context for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `Purpose.SERVER_AUTH`: a client context that authenticates servers.
    ServerAuth,
    /// `Purpose.CLIENT_AUTH`: a server context (that may verify clients).
    ClientAuth,
}

/// `ssl.create_default_context()`: a client context that trusts the
/// system's certificate authorities and checks host names.
///
/// Errors: none in practice; unreadable system certificates are skipped.
pub fn create_default_context() -> Result<SslContext> {
    create_default_context_for(Purpose::ServerAuth)
}

/// `ssl.create_default_context(purpose)`.
pub fn create_default_context_for(purpose: Purpose) -> Result<SslContext> {
    let ctx = SslContext::new(match purpose {
        Purpose::ServerAuth => Protocol::TlsClient,
        Purpose::ClientAuth => Protocol::TlsServer,
    });
    ctx.load_default_certs()?;
    Ok(ctx)
}

struct Settings {
    protocol: Protocol,
    check_hostname: bool,
    verify_mode: VerifyMode,
    roots: RootCertStore,
    chain: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
    minimum: TlsVersion,
    maximum: TlsVersion,
    given_client: Option<Arc<ClientConfig>>,
    given_server: Option<Arc<ServerConfig>>,
    built_client: Option<Arc<ClientConfig>>,
    built_server: Option<Arc<ServerConfig>>,
}

/// Python's `ssl.SSLContext` on rustls: the trust roots, the certificate
/// chain, verification and version settings for TLS connections.
///
/// A cheap handle (clones share the context) that may be sent to other
/// threads. Settings may change at any time, as in Python; connections made
/// afterwards see them.
#[derive(Clone)]
pub struct SslContext {
    settings: Arc<Mutex<Settings>>,
}

fn ssl_error(message: impl Into<String>) -> Error {
    Error::os_subclass("SSLError", message.into())
}

impl SslContext {
    /// `ssl.SSLContext(protocol)`. Clients check host names and require a
    /// verified certificate; servers ask for no client certificate. No
    /// certificate authority is trusted until one is loaded.
    pub fn new(protocol: Protocol) -> SslContext {
        let client = protocol == Protocol::TlsClient;
        SslContext {
            settings: Arc::new(Mutex::new(Settings {
                protocol,
                check_hostname: client,
                verify_mode: if client {
                    VerifyMode::CertRequired
                } else {
                    VerifyMode::CertNone
                },
                roots: RootCertStore::empty(),
                chain: None,
                alpn: Vec::new(),
                minimum: TlsVersion::MinimumSupported,
                maximum: TlsVersion::MaximumSupported,
                given_client: None,
                given_server: None,
                built_client: None,
                built_server: None,
            })),
        }
    }

    /// A client context that uses `config` as it is (every other setting
    /// of this type is ignored, except `check_hostname` for the
    /// server-hostname rules).
    pub fn from_client_config(config: Arc<ClientConfig>) -> SslContext {
        let ctx = SslContext::new(Protocol::TlsClient);
        ctx.lock().given_client = Some(config);
        ctx
    }

    /// A server context that uses `config` as it is.
    pub fn from_server_config(config: Arc<ServerConfig>) -> SslContext {
        let ctx = SslContext::new(Protocol::TlsServer);
        ctx.lock().given_server = Some(config);
        ctx
    }

    fn lock(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes a setting, dropping the configurations built from the old ones.
    fn change(&self, f: impl FnOnce(&mut Settings)) {
        let mut s = self.lock();
        f(&mut s);
        s.built_client = None;
        s.built_server = None;
    }

    /// `ctx.protocol`.
    pub fn protocol(&self) -> Protocol {
        self.lock().protocol
    }

    /// `ctx.check_hostname`.
    pub fn check_hostname(&self) -> bool {
        self.lock().check_hostname
    }

    /// `ctx.check_hostname = on`. Turning it on under `CERT_NONE` switches
    /// to `CERT_REQUIRED`, as Python does.
    pub fn set_check_hostname(&self, on: bool) {
        self.change(|s| {
            s.check_hostname = on;
            if on && s.verify_mode == VerifyMode::CertNone {
                s.verify_mode = VerifyMode::CertRequired;
            }
        });
    }

    /// `ctx.verify_mode`.
    pub fn verify_mode(&self) -> VerifyMode {
        self.lock().verify_mode
    }

    /// `ctx.verify_mode = mode`.
    ///
    /// Errors: `ValueError("Cannot set verify_mode to CERT_NONE when
    /// check_hostname is enabled.")`.
    pub fn set_verify_mode(&self, mode: VerifyMode) -> Result<()> {
        if mode == VerifyMode::CertNone && self.check_hostname() {
            return Err(Error::value(
                "Cannot set verify_mode to CERT_NONE when check_hostname is enabled.",
            ));
        }
        self.change(|s| s.verify_mode = mode);
        Ok(())
    }

    /// `ctx.minimum_version`.
    pub fn minimum_version(&self) -> TlsVersion {
        self.lock().minimum
    }

    /// `ctx.minimum_version = version`.
    pub fn set_minimum_version(&self, version: TlsVersion) {
        self.change(|s| s.minimum = version);
    }

    /// `ctx.maximum_version`.
    pub fn maximum_version(&self) -> TlsVersion {
        self.lock().maximum
    }

    /// `ctx.maximum_version = version`.
    pub fn set_maximum_version(&self, version: TlsVersion) {
        self.change(|s| s.maximum = version);
    }

    /// `ctx.set_alpn_protocols(protocols)`.
    pub fn set_alpn_protocols(&self, protocols: &[&str]) {
        let alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self.change(|s| s.alpn = alpn);
    }

    /// `ctx.load_default_certs()`: trust the system's certificate
    /// authorities (rustls-native-certs: the files OpenSSL would read,
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR` included).
    pub fn load_default_certs(&self) -> Result<()> {
        let found = rustls_native_certs::load_native_certs();
        self.change(|s| {
            s.roots.add_parsable_certificates(found.certs);
        });
        Ok(())
    }

    /// `ctx.load_verify_locations(cafile, capath, cadata)`: trust the
    /// certificate authorities in a PEM file, in the PEM files of a
    /// directory, or in PEM text.
    ///
    /// Errors: `TypeError("cafile, capath and cadata cannot be all
    /// omitted")`; `FileNotFoundError` for a missing file;
    /// `SSLError("[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl
    /// found")` when nothing usable is there.
    pub fn load_verify_locations(
        &self,
        cafile: Option<&Path>,
        capath: Option<&Path>,
        cadata: Option<&[u8]>,
    ) -> Result<()> {
        if cafile.is_none() && capath.is_none() && cadata.is_none() {
            return Err(Error::type_error(
                "cafile, capath and cadata cannot be all omitted",
            ));
        }
        let mut certs: Vec<CertificateDer<'static>> = Vec::new();
        if let Some(file) = cafile {
            certs.extend(read_certs(file)?);
        }
        if let Some(dir) = capath {
            let entries = std::fs::read_dir(dir).map_err(|e| file_error(e, dir))?;
            for entry in entries.flatten() {
                // Like OpenSSL's hashed directories: what does not parse is skipped.
                if let Ok(found) = read_certs(&entry.path()) {
                    certs.extend(found);
                }
            }
        }
        if let Some(data) = cadata {
            certs.extend(
                CertificateDer::pem_slice_iter(data)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| ssl_error(format!("[X509: PEM_LIB] {e}")))?,
            );
        }
        if certs.is_empty() && capath.is_none() {
            return Err(ssl_error(
                "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found",
            ));
        }
        self.change(|s| {
            s.roots.add_parsable_certificates(certs);
        });
        Ok(())
    }

    /// `ctx.load_cert_chain(certfile, keyfile, password)`: this side's
    /// certificate chain (PEM, leaf first) and private key (PEM; in
    /// `certfile` itself when `keyfile` is `None`). An encrypted PKCS#8 key
    /// needs `password`.
    ///
    /// Errors: `FileNotFoundError`; `SSLError("[SSL] PEM lib")` when the
    /// file holds no certificate or no key; `SSLError("[SSL: BAD_DECRYPT]
    /// bad decrypt")` for a wrong password.
    pub fn load_cert_chain(
        &self,
        certfile: &Path,
        keyfile: Option<&Path>,
        password: Option<&str>,
    ) -> Result<()> {
        let chain = read_certs(certfile)?;
        if chain.is_empty() {
            return Err(ssl_error("[SSL] PEM lib"));
        }
        let keyfile = keyfile.unwrap_or(certfile);
        let pem = std::fs::read(keyfile).map_err(|e| file_error(e, keyfile))?;
        let key = read_key(&pem, password)?;
        self.change(|s| s.chain = Some((chain, key)));
        Ok(())
    }

    /// The rustls client configuration these settings make (cached).
    ///
    /// Errors: `ValueError("Cannot create a client socket with a
    /// PROTOCOL_TLS_SERVER context")`; `SSLError` for settings rustls
    /// refuses.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let mut s = self.lock();
        if let Some(c) = &s.given_client {
            return Ok(c.clone());
        }
        if s.protocol != Protocol::TlsClient {
            return Err(Error::value(
                "Cannot create a client socket with a PROTOCOL_TLS_SERVER context",
            ));
        }
        if let Some(c) = &s.built_client {
            return Ok(c.clone());
        }
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(&s)?)
            .map_err(|e| ssl_error(format!("[SSL] {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match s.verify_mode {
            VerifyMode::CertNone => Arc::new(Verifier::any(provider.clone())),
            _ => Arc::new(Verifier::webpki(
                &s.roots,
                provider.clone(),
                s.check_hostname,
            )),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match &s.chain {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| ssl_error(format!("[SSL] {e}")))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = s.alpn.clone();
        let config = Arc::new(config);
        s.built_client = Some(config.clone());
        Ok(config)
    }

    /// The rustls server configuration these settings make (cached).
    ///
    /// Errors: `ValueError("Cannot create a server socket with a
    /// PROTOCOL_TLS_CLIENT context")`; `SSLError` when no certificate chain
    /// was loaded, or for settings rustls refuses.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let mut s = self.lock();
        if let Some(c) = &s.given_server {
            return Ok(c.clone());
        }
        if s.protocol != Protocol::TlsServer {
            return Err(Error::value(
                "Cannot create a server socket with a PROTOCOL_TLS_CLIENT context",
            ));
        }
        if let Some(c) = &s.built_server {
            return Ok(c.clone());
        }
        let Some((chain, key)) = &s.chain else {
            return Err(ssl_error(
                "[SSL: NO_CERTIFICATE_SET] no certificate set (load_cert_chain() was not called)",
            ));
        };
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(&s)?)
            .map_err(|e| ssl_error(format!("[SSL] {e}")))?;
        let builder = match s.verify_mode {
            VerifyMode::CertNone => builder.with_no_client_auth(),
            mode => {
                let roots = Arc::new(s.roots.clone());
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if mode == VerifyMode::CertOptional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|e| {
                    ssl_error(format!(
                        "[SSL] client certificates cannot be verified: {e} (load_verify_locations() first)"
                    ))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| ssl_error(format!("[SSL: KEY_VALUES_MISMATCH] {e}")))?;
        config.alpn_protocols = s.alpn.clone();
        let config = Arc::new(config);
        s.built_server = Some(config.clone());
        Ok(config)
    }
}

impl fmt::Debug for SslContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<ssl.SSLContext object at {:p}>",
            Arc::as_ptr(&self.settings)
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn versions(s: &Settings) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
    let (lo, hi) = (s.minimum.rank(), s.maximum.rank());
    let mut out = Vec::new();
    if lo <= 2 && 2 <= hi {
        out.push(&rustls::version::TLS12);
    }
    if lo <= 3 && 3 <= hi {
        out.push(&rustls::version::TLS13);
    }
    if out.is_empty() {
        return Err(ssl_error(
            "[SSL: NO_PROTOCOLS_AVAILABLE] no protocols available",
        ));
    }
    Ok(out)
}

fn file_error(e: std::io::Error, path: &Path) -> Error {
    let msg = format!(
        "[Errno {}] {}: {}",
        e.raw_os_error().unwrap_or(0),
        crate::exceptions::strerror(&e),
        crate::exceptions::py_str_repr(&path.to_string_lossy())
    );
    Error::os_with_message(e, msg)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| file_error(e, path))?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| ssl_error("[SSL] PEM lib"))
}

fn read_key(pem: &[u8], password: Option<&str>) -> Result<PrivateKeyDer<'static>> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password else {
            return Err(ssl_error(
                "[SSL] PEM lib (the key is encrypted: a password is needed)",
            ));
        };
        return decrypt_pkcs8(&text, password);
    }
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| ssl_error("[SSL] PEM lib"))
}

fn decrypt_pkcs8(text: &str, password: &str) -> Result<PrivateKeyDer<'static>> {
    use pkcs8::der::Decode;
    let block = &text[text
        .find("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        .unwrap_or(0)..];
    let end = block
        .find("-----END ENCRYPTED PRIVATE KEY-----")
        .map_or(block.len(), |i| {
            i + "-----END ENCRYPTED PRIVATE KEY-----".len()
        });
    let (_, der) = pkcs8::der::pem::decode_vec(&block.as_bytes()[..end])
        .map_err(|_| ssl_error("[SSL] PEM lib"))?;
    let info =
        pkcs8::EncryptedPrivateKeyInfo::from_der(&der).map_err(|_| ssl_error("[SSL] PEM lib"))?;
    let plain = info
        .decrypt(password)
        .map_err(|_| ssl_error("[SSL: BAD_DECRYPT] bad decrypt"))?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

// ===== verification =====

/// The server-certificate check a client context asks for: nothing
/// (`CERT_NONE`), or the Web PKI chain check, with or without the host name.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    check_hostname: bool,
    /// `CERT_NONE`: every certificate is accepted.
    accept_any: bool,
}

impl Verifier {
    fn any(provider: Arc<CryptoProvider>) -> Verifier {
        Verifier {
            provider,
            webpki: None,
            check_hostname: false,
            accept_any: true,
        }
    }

    fn webpki(
        roots: &RootCertStore,
        provider: Arc<CryptoProvider>,
        check_hostname: bool,
    ) -> Verifier {
        // No roots: every certificate is untrusted (rustls refuses to build
        // a verifier without any).
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
                .build()
                .ok();
        Verifier {
            provider,
            webpki,
            check_hostname,
            accept_any: false,
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if self.accept_any {
            return Ok(ServerCertVerified::assertion());
        }
        let Some(webpki) = &self.webpki else {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ));
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_hostname => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// ===== errors =====

/// The Python error for a TLS failure: `SSLCertVerificationError` for a
/// certificate that does not verify, `SSLError` for the rest, with
/// OpenSSL-style `[SSL: REASON] text` messages (without OpenSSL's
/// `(_ssl.c:NNNN)` source locations). `hostname` is the name checked.
pub fn tls_error(e: &rustls::Error, hostname: Option<&str>) -> Error {
    use rustls::{AlertDescription, Error as E};
    let verify = |reason: String| {
        Error::os_subclass(
            "SSLCertVerificationError",
            format!("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {reason}"),
        )
    };
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                verify("unable to get local issuer certificate".into())
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                verify("certificate has expired".into())
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                verify("certificate is not yet valid".into())
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                verify(format!(
                    "Hostname mismatch, certificate is not valid for '{}'.",
                    hostname.unwrap_or("")
                ))
            }
            CertificateError::Revoked => verify("certificate revoked".into()),
            CertificateError::BadSignature => verify("certificate signature failure".into()),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                verify("unsupported certificate purpose".into())
            }
            other => verify(format!("{other:?}")),
        },
        E::NoCertificatesPresented => {
            ssl_error("[SSL: PEER_DID_NOT_RETURN_A_CERTIFICATE] peer did not return a certificate")
        }
        E::AlertReceived(alert) => {
            let name = match alert {
                AlertDescription::CertificateRequired => "CERTIFICATE_REQUIRED",
                AlertDescription::UnknownCA => "UNKNOWN_CA",
                AlertDescription::BadCertificate => "BAD_CERTIFICATE",
                AlertDescription::CertificateExpired => "CERTIFICATE_EXPIRED",
                AlertDescription::HandshakeFailure => "HANDSHAKE_FAILURE",
                AlertDescription::ProtocolVersion => "PROTOCOL_VERSION",
                AlertDescription::DecryptError => "DECRYPT_ERROR",
                AlertDescription::NoApplicationProtocol => "NO_APPLICATION_PROTOCOL",
                AlertDescription::UnrecognisedName => "UNRECOGNIZED_NAME",
                AlertDescription::DecodeError => "DECODE_ERROR",
                AlertDescription::IllegalParameter => "ILLEGAL_PARAMETER",
                _ => "ALERT",
            };
            let text = name.to_ascii_lowercase().replace('_', " ");
            ssl_error(format!("[SSL: TLSV1_ALERT_{name}] tlsv1 alert {text}"))
        }
        E::InvalidMessage(_) => ssl_error("[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        E::NoApplicationProtocol => {
            ssl_error("[SSL: NO_APPLICATION_PROTOCOL] no application protocol")
        }
        E::PeerIncompatible(_) => ssl_error("[SSL: NO_SHARED_CIPHER] no shared cipher"),
        other => ssl_error(format!("[SSL] {other}")),
    }
}

/// `true` for `ssl.SSLError` and its subclasses.
pub fn is_ssl_error(e: &Error) -> bool {
    matches!(
        e.python_name(),
        "SSLError"
            | "SSLCertVerificationError"
            | "SSLZeroReturnError"
            | "SSLEOFError"
            | "SSLWantReadError"
            | "SSLWantWriteError"
            | "SSLSyscallError"
    )
}

/// `true` for `ssl.SSLCertVerificationError` (`ssl.CertificateError`).
pub fn is_cert_verification_error(e: &Error) -> bool {
    e.python_name() == "SSLCertVerificationError"
}

// ===== what a connection shows =====

/// `ssl_object.getpeercert()`: the peer certificate as Python's dict.
/// `{:?}` prints it as Python does: `{'subject': ((('commonName',
/// 'localhost'),),), 'issuer': …, 'version': 3, 'serialNumber': '…',
/// 'notBefore': 'Nov 30 00:00:00 2026 GMT', 'notAfter': …,
/// 'subjectAltName': (('DNS', 'localhost'),)}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// `subject`: relative distinguished names of `(name, value)` pairs.
    pub subject: Vec<Vec<(String, String)>>,
    /// `issuer`.
    pub issuer: Vec<Vec<(String, String)>>,
    /// `version` (3 for X.509 v3).
    pub version: u32,
    /// `serialNumber`, in upper-case hex.
    pub serial_number: String,
    /// `notBefore`, as `Nov 30 00:00:00 2026 GMT`.
    pub not_before: String,
    /// `notAfter`.
    pub not_after: String,
    /// `subjectAltName`: `("DNS", name)`, `("IP Address", ip)`, …
    pub subject_alt_name: Vec<(String, String)>,
}

impl PeerCert {
    /// Parses a DER certificate.
    ///
    /// Errors: `SSLError` for one that does not parse.
    pub fn from_der(der: &[u8]) -> Result<PeerCert> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| ssl_error(format!("[SSL] bad certificate: {e}")))?;
        let names = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_rdn()
                .map(|rdn| {
                    rdn.iter()
                        .map(|atv| {
                            (
                                attribute_name(&atv.attr_type().to_id_string()),
                                atv.as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .collect()
        };
        let mut alt = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => alt.push(("DNS".into(), (*n).to_owned())),
                    GeneralName::RFC822Name(n) => alt.push(("email".into(), (*n).to_owned())),
                    GeneralName::URI(n) => alt.push(("URI".into(), (*n).to_owned())),
                    GeneralName::IPAddress(b) => alt.push(("IP Address".into(), ip_text(b))),
                    _ => {}
                }
            }
        }
        Ok(PeerCert {
            subject: names(cert.subject()),
            issuer: names(cert.issuer()),
            version: cert.version().0 + 1,
            serial_number: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
            not_before: asn1_time(cert.validity().not_before.timestamp()),
            not_after: asn1_time(cert.validity().not_after.timestamp()),
            subject_alt_name: alt,
        })
    }

    /// The first `commonName` of the subject.
    pub fn common_name(&self) -> Option<&str> {
        self.subject
            .iter()
            .flatten()
            .find(|(k, _)| k == "commonName")
            .map(|(_, v)| v.as_str())
    }
}

fn attribute_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "commonName",
        "2.5.4.6" => "countryName",
        "2.5.4.7" => "localityName",
        "2.5.4.8" => "stateOrProvinceName",
        "2.5.4.10" => "organizationName",
        "2.5.4.11" => "organizationalUnitName",
        "2.5.4.5" => "serialNumber",
        "1.2.840.113549.1.9.1" => "emailAddress",
        other => other,
    }
    .to_owned()
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            // OpenSSL prints every group, upper case: 0:0:0:0:0:0:0:1.
            let ip = std::net::Ipv6Addr::from(a);
            ip.segments()
                .iter()
                .map(|s| format!("{s:X}"))
                .collect::<Vec<_>>()
                .join(":")
        }
        _ => String::new(),
    }
}

/// `Nov  3 09:05:01 2026 GMT` (OpenSSL's `ASN1_TIME_print`).
fn asn1_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:>2} {:02}:{:02}:{:02} {} GMT",
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        year
    )
}

fn py_tuple(items: &[String]) -> String {
    if items.len() == 1 {
        format!("({},)", items[0])
    } else {
        format!("({})", items.join(", "))
    }
}

fn py_names(names: &[Vec<(String, String)>]) -> String {
    let rdns: Vec<String> = names
        .iter()
        .map(|rdn| {
            let pairs: Vec<String> = rdn
                .iter()
                .map(|(k, v)| format!("('{k}', {})", crate::exceptions::py_str_repr(v)))
                .collect();
            py_tuple(&pairs)
        })
        .collect();
    py_tuple(&rdns)
}

impl fmt::Debug for PeerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version == 0 {
            return f.write_str("{}");
        }
        let repr = crate::exceptions::py_str_repr;
        write!(
            f,
            "{{'subject': {}, 'issuer': {}, 'version': {}, 'serialNumber': {}, 'notBefore': {}, 'notAfter': {}",
            py_names(&self.subject),
            py_names(&self.issuer),
            self.version,
            repr(&self.serial_number),
            repr(&self.not_before),
            repr(&self.not_after)
        )?;
        if !self.subject_alt_name.is_empty() {
            let alt: Vec<String> = self
                .subject_alt_name
                .iter()
                .map(|(k, v)| format!("({}, {})", repr(k), repr(v)))
                .collect();
            write!(f, ", 'subjectAltName': {}", py_tuple(&alt))?;
        }
        f.write_str("}")
    }
}

/// `ssl_object.cipher()`: `(name, protocol version, secret bits)`, e.g.
/// `('TLS_AES_256_GCM_SHA384', 'TLSv1.3', 256)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Cipher {
    /// The suite's name (TLS 1.3 names as OpenSSL gives them; TLS 1.2
    /// suites by their IANA names).
    pub name: String,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// Secret bits (128 or 256).
    pub bits: u32,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "('{}', '{}', {})", self.name, self.version, self.bits)
    }
}

/// `get_extra_info('ssl_object')`: what Python's `SSLObject` tells about an
/// established connection, taken when its handshake completed.
#[derive(Clone, Debug)]
pub struct SslObject {
    server_side: bool,
    server_hostname: Option<String>,
    version: Option<String>,
    cipher: Option<Cipher>,
    alpn: Option<String>,
    peer_der: Option<Vec<u8>>,
    peer_cert: Option<PeerCert>,
    context: SslContext,
}

impl SslObject {
    pub(crate) fn capture(
        conn: &rustls::Connection,
        context: &SslContext,
        server_hostname: Option<&str>,
        verified: bool,
    ) -> SslObject {
        let (version, cipher) = describe(conn);
        let peer_der = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        let peer_cert = match (&peer_der, verified) {
            (Some(der), true) => PeerCert::from_der(der).ok(),
            (Some(_), false) => Some(PeerCert::default()),
            (None, _) => None,
        };
        SslObject {
            server_side: matches!(conn, rustls::Connection::Server(_)),
            server_hostname: server_hostname.map(str::to_owned),
            version,
            cipher,
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            peer_der,
            peer_cert,
            context: context.clone(),
        }
    }

    /// `server_side`.
    pub fn server_side(&self) -> bool {
        self.server_side
    }

    /// `server_hostname`.
    pub fn server_hostname(&self) -> Option<&str> {
        self.server_hostname.as_deref()
    }

    /// `version()`: `"TLSv1.3"` or `"TLSv1.2"`.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// `cipher()`.
    pub fn cipher(&self) -> Option<&Cipher> {
        self.cipher.as_ref()
    }

    /// `compression()`: always `None` (TLS compression is not offered).
    pub fn compression(&self) -> Option<&str> {
        None
    }

    /// `selected_alpn_protocol()`.
    pub fn selected_alpn_protocol(&self) -> Option<&str> {
        self.alpn.as_deref()
    }

    /// `getpeercert()`: `None` without a peer certificate; an empty dict
    /// (`PeerCert::default()`) when it was not verified (`CERT_NONE`).
    pub fn getpeercert(&self) -> Option<&PeerCert> {
        self.peer_cert.as_ref()
    }

    /// `getpeercert(binary_form=True)`: the DER bytes.
    pub fn getpeercert_der(&self) -> Option<&[u8]> {
        self.peer_der.as_deref()
    }

    /// `context`.
    pub fn context(&self) -> &SslContext {
        &self.context
    }
}

fn describe(conn: &rustls::Connection) -> (Option<String>, Option<Cipher>) {
    let version = conn.protocol_version().map(|v| match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    });
    let cipher = conn.negotiated_cipher_suite().map(|suite| {
        let raw = format!("{:?}", suite.suite());
        let name = raw
            .strip_prefix("TLS13_")
            .map_or(raw.clone(), |r| format!("TLS_{r}"));
        let bits = if name.contains("128") { 128 } else { 256 };
        Cipher {
            name,
            version: version.clone().unwrap_or_default(),
            bits,
        }
    });
    (version, cipher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_time_formats_like_openssl() {
        assert_eq!(asn1_time(0), "Jan  1 00:00:00 1970 GMT");
        assert_eq!(asn1_time(1_796_083_200), "Dec  1 00:00:00 2026 GMT");
        assert_eq!(asn1_time(951_782_400 + 3661), "Feb 29 01:01:01 2000 GMT");
    }

    #[test]
    fn settings_follow_python() {
        let ctx = SslContext::new(Protocol::TlsServer);
        assert!(!ctx.check_hostname());
        assert_eq!(ctx.verify_mode(), VerifyMode::CertNone);
        ctx.set_check_hostname(true);
        assert_eq!(ctx.verify_mode(), VerifyMode::CertRequired);
        assert_eq!(
            ctx.set_verify_mode(VerifyMode::CertNone)
                .unwrap_err()
                .to_string(),
            "Cannot set verify_mode to CERT_NONE when check_hostname is enabled."
        );
        assert_eq!(
            ctx.client_config().unwrap_err().to_string(),
            "Cannot create a client socket with a PROTOCOL_TLS_SERVER context"
        );
        let e = ctx.server_config().unwrap_err();
        assert_eq!(e.python_name(), "SSLError");
        let ctx = SslContext::new(Protocol::TlsClient);
        assert_eq!(
            ctx.load_verify_locations(None, None, None)
                .unwrap_err()
                .to_string(),
            "cafile, capath and cadata cannot be all omitted"
        );
        ctx.set_minimum_version(TlsVersion::Tlsv1_3);
        ctx.set_maximum_version(TlsVersion::Tlsv1_2);
        assert!(ctx.client_config().is_err());
    }
}
