//! TLS for MQTT (`mqtts://`): a rustls client configuration (ring provider) from PEM files.

use crate::bus::mqtt::MqttTls;
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Why the TLS configuration cannot be built. Messages name the file and the setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is unreadable or holds nothing usable.
    #[error("{setting} = {path}: {problem}")]
    File {
        /// The configuration key.
        setting: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the combination.
    #[error("TLS settings are not usable: {0}")]
    Rustls(String),
}

fn file_error(setting: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        setting,
        path: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// Reads every certificate in a PEM file; at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(setting, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(setting, path, e))?;
    if certs.is_empty() {
        return Err(file_error(setting, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The transport for an MQTT connection: plain TCP, or TLS with `tls`.
pub fn transport(tls: Option<&MqttTls>) -> Result<Transport, TlsError> {
    let Some(tls) = tls else {
        return Ok(Transport::Tcp);
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in certificates("source.mqtt.ca_file", path)? {
                roots
                    .add(cert)
                    .map_err(|e| file_error("source.mqtt.ca_file", path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::Rustls(
                    "the system has no trusted CA certificates; set source.mqtt.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates("source.mqtt.client_cert_file", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| file_error("source.mqtt.client_key_file", key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rustls(e.to_string()))?
        }
    };
    Ok(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))))
}
