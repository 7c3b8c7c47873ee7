//! Certificates for the TLS tests, made at test time with rcgen: a CA, a
//! `localhost` server certificate it signs (also valid for 127.0.0.1), an
//! expired one, a client certificate, and a certificate from a CA nobody
//! trusts. Written as PEM files under a fresh temporary directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use asyncio::ssl::{Protocol, SslContext, VerifyMode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The files of one test PKI.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    expired: bool,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "asyncio-rs tests");
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Makes a fresh PKI.
pub fn pki() -> Pki {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "asyncio-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let trusted = ca("asyncio-rs test CA");
    let rogue = ca("untrusted CA");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca_pem = trusted.pem();
    let ca = write("ca.pem", &ca_pem);
    let (c, k) = leaf(&trusted, "localhost", &["localhost", "127.0.0.1"], false);
    let (cert, key) = (write("cert.pem", &c), write("key.pem", &k));
    let (c, k) = leaf(&trusted, "localhost", &["localhost"], true);
    let (expired_cert, expired_key) = (write("expired.pem", &c), write("expired.key", &k));
    let (c, k) = leaf(&trusted, "client", &["client.example"], false);
    let (client_cert, client_key) = (write("client.pem", &c), write("client.key", &k));
    let (c, k) = leaf(&rogue, "localhost", &["localhost"], false);
    let (rogue_cert, rogue_key) = (write("rogue.pem", &c), write("rogue.key", &k));
    Pki {
        dir,
        ca,
        ca_pem,
        cert,
        key,
        expired_cert,
        expired_key,
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

impl Pki {
    /// A server context with the `localhost` certificate.
    pub fn server(&self) -> SslContext {
        let ctx = SslContext::new(Protocol::TlsServer);
        ctx.load_cert_chain(&self.cert, Some(&self.key), None)
            .unwrap();
        ctx
    }

    /// A server context with `cert`/`key`.
    pub fn server_with(&self, cert: &Path, key: &Path) -> SslContext {
        let ctx = SslContext::new(Protocol::TlsServer);
        ctx.load_cert_chain(cert, Some(key), None).unwrap();
        ctx
    }

    /// A client context trusting the test CA.
    pub fn client(&self) -> SslContext {
        let ctx = SslContext::new(Protocol::TlsClient);
        ctx.load_verify_locations(Some(&self.ca), None, None)
            .unwrap();
        ctx
    }

    /// A server context that requires client certificates from the test CA.
    pub fn server_requiring_clients(&self) -> SslContext {
        let ctx = self.server();
        ctx.load_verify_locations(Some(&self.ca), None, None)
            .unwrap();
        ctx.set_verify_mode(VerifyMode::CertRequired).unwrap();
        ctx
    }
}

/// The port a server listens on.
pub fn port_of(server: &asyncio::Server) -> u16 {
    server.sockets()[0]
        .getsockname()
        .and_then(|a| a.port())
        .unwrap()
}

/// A streams echo server over TLS: echoes lines until EOF.
pub async fn echo_server(ctx: &SslContext) -> asyncio::Result<asyncio::Server> {
    asyncio::streams::start_server(
        |reader: asyncio::StreamReader, writer: asyncio::StreamWriter| async move {
            while let Some(line) = reader.next_line().await? {
                writer.write(&line)?;
                writer.drain().await?;
            }
            writer.close();
            writer.wait_closed().await
        },
        "127.0.0.1",
        0,
    )
    .ssl(ctx)
    .await
}
