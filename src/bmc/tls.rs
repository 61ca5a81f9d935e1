//! TLS trust for BMCs: `--ca-cert` that also accepts the BMC's own self-signed
//! certificate (CA bit or not), and `--tls-fingerprint sha256:…` pins.
//!
//! Why: `openssl req -x509` (and many BMC firmwares) make self-signed certificates with
//! `basicConstraints CA:TRUE`. webpki refuses such a certificate as the server's own
//! (`CaUsedAsEndEntity`) even when it is the very file given as `--ca-cert`, which pushed
//! owners to `--insecure`. ureq offers no custom verifier, so this module plugs a rustls
//! connector with its own [`ServerCertVerifier`] into ureq's connector chain.
//!
//! Invariants:
//! - Verification is never weaker than webpki's: a certificate is accepted if webpki
//!   accepts its chain to the given roots, or if it is byte-for-byte one of the
//!   certificates in the `--ca-cert` file *and* valid for the host name; TLS signatures
//!   are always checked with the provider's algorithms.
//! - A fingerprint pin is an additional requirement: with a pin, the server's end-entity
//!   certificate must hash to it (compared in constant time), whatever else is given.
//!   With only a pin, the pin is the whole trust decision (name and dates are not
//!   checked: the pin names one exact certificate).
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// A SHA-256 certificate fingerprint.
pub type Fingerprint = [u8; 32];

/// Parses `sha256:<64 hex>` (colons between bytes, as `openssl x509 -fingerprint` prints
/// them, are accepted, and so is upper case).
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, String> {
    let t = s.trim();
    let hexpart = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .or_else(|| t.strip_prefix("sha256="))
        .or_else(|| t.strip_prefix("SHA256="))
        .ok_or_else(|| "a TLS fingerprint must start with sha256:".to_string())?;
    let digits: String = hexpart.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&digits)
        .map_err(|_| "the fingerprint after sha256: must be 64 hexadecimal digits".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "the fingerprint after sha256: must be 64 hexadecimal digits".to_string())
}

/// What the detail of a TLS failure says when the certificate matches no pin (the CLI
/// words it as the flag that gave the pins).
pub const NOT_PINNED: &str = "does not match any pinned fingerprint";

/// `sha256:<hex>` of a certificate, as shown in errors and by the simulator.
pub fn fingerprint_of(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// What the BMC's certificate is checked against.
pub(crate) struct Trust {
    /// Certificates from `--ca-cert` (CAs, or the BMC's own certificate).
    pub certs: Vec<CertificateDer<'static>>,
    pub pins: Vec<Fingerprint>,
}

#[derive(Debug)]
struct BmcVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    certs: Vec<CertificateDer<'static>>,
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BmcVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.pins.is_empty() {
            let digest: Fingerprint = Sha256::digest(end_entity.as_ref()).into();
            let pinned = self
                .pins
                .iter()
                .fold(subtle::Choice::from(0), |acc, p| acc | p.ct_eq(&digest));
            if !bool::from(pinned) {
                return Err(rustls::Error::General(format!(
                    "the certificate ({}) {NOT_PINNED}",
                    fingerprint_of(end_entity.as_ref())
                )));
            }
        }
        let Some(webpki) = &self.webpki else {
            // Only a pin was given, and it matched.
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(e) => {
                // The BMC presents exactly a certificate from --ca-cert (self-signed, often
                // with the CA bit): trusted as itself, once its name fits.
                if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
                    let cert =
                        webpki::EndEntityCert::try_from(end_entity).map_err(|_| e.clone())?;
                    cert.verify_is_valid_for_subject_name(server_name)
                        .map_err(|_| e)?;
                    return Ok(ServerCertVerified::assertion());
                }
                Err(e)
            }
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls client configuration for `trust`.
pub(crate) fn client_config(trust: Trust) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = if trust.certs.is_empty() {
        None
    } else {
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(trust.certs.iter().cloned());
        if added == 0 {
            // Not usable as a trust anchor; an exact match can still be trusted.
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        }
    };
    if webpki.is_none() && trust.pins.is_empty() && trust.certs.is_empty() {
        return Err("no certificate and no fingerprint to trust".into());
    }
    let verifier = BmcVerifier {
        webpki,
        certs: trust.certs,
        pins: trust.pins,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Wraps ureq's TCP (or CONNECT-proxy) transport in rustls with our verifier.
#[derive(Debug)]
pub(crate) struct TlsConnector {
    pub config: Arc<ClientConfig>,
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .ok_or(ureq::Error::Tls("the URL has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name =
            ServerName::try_from(host).map_err(|_| ureq::Error::Tls("invalid TLS server name"))?;
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// A rustls stream as a ureq transport.
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let n = self.stream.read(input)?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_both_spellings() {
        let hex64 = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{hex64}")).unwrap(),
            [0xab; 32]
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{colons}")).unwrap(),
            [0xab; 32]
        );
        assert!(parse_fingerprint(&hex64).is_err());
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }
}
