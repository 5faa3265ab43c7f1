//! TLS for HTTP: the certificate (self-signed at first start, or the user's), its fingerprint,
//! and the rustls server configuration (the `ring` provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN).
//!
//! The self-signed certificate lives in `<state_dir>/tls/cert.pem` with its key in
//! `<state_dir>/tls/key.pem` (0600). It names `localhost`, `127.0.0.1`, `::1`, the machine's host
//! name and the bound address, and clients that reach the daemon by another name pin it by its
//! SHA-256 fingerprint (printed on the ready line and by `drover auth`).

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::{Config, DaemonError};

/// The self-signed certificate made in a state directory.
pub fn self_signed_cert_path(state_dir: &Path) -> PathBuf {
    state_dir.join("tls").join("cert.pem")
}

/// Its private key (0600).
pub fn self_signed_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("tls").join("key.pem")
}

/// The certificate the daemon serves with `config`: the configured one, or the self-signed one.
pub fn cert_path(config: &Config) -> PathBuf {
    config
        .tls_cert
        .clone()
        .unwrap_or_else(|| self_signed_cert_path(&config.state_dir))
}

/// The SHA-256 fingerprint of the self-signed certificate in `state_dir`, as
/// `sha256:AB:CD:...` (the first certificate of the PEM file, in DER).
pub fn fingerprint(state_dir: &Path) -> Result<String, DaemonError> {
    fingerprint_file(&self_signed_cert_path(state_dir))
}

/// The SHA-256 fingerprint of the first certificate in a PEM file.
pub fn fingerprint_file(cert: &Path) -> Result<String, DaemonError> {
    let certs = load_certs(cert)?;
    Ok(fingerprint_der(&certs[0]))
}

fn fingerprint_der(der: &[u8]) -> String {
    let hash = Sha256::digest(der);
    let hex: Vec<String> = hash.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

/// The server configuration and the certificate's fingerprint. Makes the self-signed
/// certificate first if none is configured and none exists yet.
pub(crate) fn server_config(
    config: &Config,
    bound: IpAddr,
) -> Result<(Arc<rustls::ServerConfig>, String), DaemonError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        (None, None) => {
            let cert = self_signed_cert_path(&config.state_dir);
            let key = self_signed_key_path(&config.state_dir);
            if !cert.exists() || !key.exists() {
                make_self_signed(&config.state_dir, bound)?;
            }
            (cert, key)
        }
        _ => {
            return Err(DaemonError::Config {
                reason: "tls_cert and tls_key must be given together".into(),
            })
        }
    };
    let certs = load_certs(&cert)?;
    let fingerprint = fingerprint_der(&certs[0]);
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| DaemonError::Config {
        // The message names the file, never its contents.
        reason: format!("no usable private key in {}: {e}", key.display()),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| DaemonError::Config {
            reason: format!("TLS certificate {}: {e}", cert.display()),
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(server), fingerprint))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, DaemonError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| DaemonError::Config {
            reason: format!("reading TLS certificate {}: {e}", path.display()),
        })?;
    if certs.is_empty() {
        return Err(DaemonError::Config {
            reason: format!("{} holds no certificate", path.display()),
        });
    }
    Ok(certs)
}

/// Make a self-signed certificate and its key (key 0600, both written atomically).
fn make_self_signed(state_dir: &Path, bound: IpAddr) -> Result<(), DaemonError> {
    let dir = state_dir.join("tls");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| DaemonError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    if !bound.is_unspecified() && !bound.is_loopback() {
        names.push(bound.to_string());
    }
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| DaemonError::Config {
        reason: format!("making a self-signed TLS certificate: {e}"),
    })?;
    crate::token::write_private(
        &self_signed_key_path(state_dir),
        generated.signing_key.serialize_pem().as_bytes(),
    )?;
    crate::token::write_private(
        &self_signed_cert_path(state_dir),
        generated.cert.pem().as_bytes(),
    )?;
    tracing::info!(dir = %dir.display(), "made a self-signed TLS certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_signed_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(dir.path());
        let (_, first) = server_config(&config, "0.0.0.0".parse().unwrap()).unwrap();
        let (_, again) = server_config(&config, "0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(first, again, "made at first start, then reused");
        assert_eq!(fingerprint(dir.path()).unwrap(), first);
        assert!(first.starts_with("sha256:"));
        assert_eq!(first.len(), "sha256:".len() + 32 * 3 - 1);
        let mode = fs::metadata(self_signed_key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
