//! The server's PKI: a CA and a serving certificate generated on first start (rcgen) and kept under
//! `<data-dir>/pki`, loaded into a rustls config that offers HTTP/2 and HTTP/1.1.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors building the PKI.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a PKI file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating a key or certificate failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("{path}: {why}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The CA and serving certificate, as PEM.
pub struct Pki {
    /// The CA certificate (what clients trust).
    pub ca_pem: String,
    /// The serving certificate chain.
    pub cert_pem: String,
    /// The serving key.
    pub key_pem: String,
}

fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The CA's certificate parameters; the same on every start so a stored CA key can sign again.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "kvol-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(params)
}

/// Load the PKI from `dir`, generating what is missing. `hosts` become the serving certificate's SANs.
pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, TlsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // The keys are 0600 already; the directory is private too (also one made 0755 by an older kvol).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let (ca_crt, ca_key, crt, key) =
        (dir.join("ca.crt"), dir.join("ca.key"), dir.join("apiserver.crt"), dir.join("apiserver.key"));
    if !ca_crt.exists() || !ca_key.exists() {
        let gen = |source| TlsError::Generate { what: "CA", source };
        let key = KeyPair::generate().map_err(gen)?;
        let cert = ca_params().map_err(gen)?.self_signed(&key).map_err(gen)?;
        write_private(&ca_key, &key.serialize_pem(), 0o600)?;
        write_private(&ca_crt, &cert.pem(), 0o644)?;
        // A new CA invalidates any old serving certificate.
        let _ = std::fs::remove_file(&crt);
    }
    let ca_pem = std::fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?;
    if !crt.exists() || !key.exists() {
        let gen = |source| TlsError::Generate { what: "serving certificate", source };
        let ca_key_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        let ca_keypair = KeyPair::from_pem(&ca_key_pem).map_err(gen)?;
        // The issuer needs the CA's name and key, not its certificate bytes: rebuild it from the same params.
        let issuer = Issuer::new(ca_params().map_err(gen)?, ca_keypair);
        let serving_key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
        params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        for h in hosts {
            let san = match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(h.clone().try_into().map_err(gen)?),
            };
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let cert = params.signed_by(&serving_key, &issuer).map_err(gen)?;
        write_private(&key, &serving_key.serialize_pem(), 0o600)?;
        write_private(&crt, &cert.pem(), 0o644)?;
    }
    Ok(Pki {
        ca_pem,
        cert_pem: std::fs::read_to_string(&crt).map_err(io(&crt))?,
        key_pem: std::fs::read_to_string(&key).map_err(io(&key))?,
    })
}

/// A rustls server config for the serving certificate, offering h2 and http/1.1.
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let bad = |why: &str| TlsError::BadPem { path: PathBuf::from("apiserver.crt/key"), why: why.to_string() };
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pki.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e.to_string()))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pki.key_pem.as_bytes())
        .map_err(|e| bad(&e.to_string()))?
        .ok_or_else(|| bad("no private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
