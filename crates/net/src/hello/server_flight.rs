//! The server's first flight, parsed: ServerHello, Certificate,
//! ServerKeyExchange, CertificateRequest, ServerHelloDone, and DTLS's
//! HelloVerifyRequest. Alerts are read by [`super::wire::Reader`].

use serde::Serialize;

use super::wire::{Cursor, WireError};

/// supported_versions, in a ServerHello that chose TLS 1.3.
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// A ServerHello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerHello {
    /// server_version (or the supported_versions choice, for TLS 1.3).
    pub version: u16,
    /// The server random.
    #[serde(skip)]
    pub random: Vec<u8>,
    /// The chosen cipher suite.
    pub suite: u16,
    /// The chosen compression method.
    pub compression: u8,
    /// Extension code points the server sent.
    pub extensions: Vec<u16>,
}

impl ServerHello {
    /// Parses a ServerHello body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(body, "ServerHello");
        let mut version = c.u16()?;
        let random = c.take(32)?.to_vec();
        c.vec8()?; // session id
        let suite = c.u16()?;
        let compression = c.u8()?;
        let mut extensions = Vec::new();
        if !c.is_empty() {
            let mut e = Cursor::new(c.vec16()?, "ServerHello extensions");
            while !e.is_empty() {
                let code = e.u16()?;
                let data = e.vec16()?;
                if code == EXT_SUPPORTED_VERSIONS && data.len() == 2 {
                    version = u16::from_be_bytes([data[0], data[1]]);
                }
                extensions.push(code);
            }
        }
        Ok(ServerHello {
            version,
            random,
            suite,
            compression,
            extensions,
        })
    }
}

/// A DTLS HelloVerifyRequest's cookie.
pub fn hello_verify_cookie(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut c = Cursor::new(body, "HelloVerifyRequest");
    c.u16()?;
    Ok(c.vec8()?.to_vec())
}

/// A Certificate message: the chain, leaf first, DER.
pub fn certificates(body: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    let mut c = Cursor::new(body, "Certificate");
    let mut list = Cursor::new(c.vec24()?, "Certificate list");
    let mut chain = Vec::new();
    while !list.is_empty() {
        chain.push(list.vec24()?.to_vec());
    }
    Ok(chain)
}

/// An ECDHE ServerKeyExchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EcdheParams {
    /// The named group (curve) the server chose.
    pub group: u16,
    /// The server's ephemeral public key (an uncompressed point).
    #[serde(skip)]
    pub public: Vec<u8>,
    /// The signature algorithm of the signature over the parameters.
    pub signature_algorithm: u16,
    /// The signature.
    #[serde(skip)]
    pub signature: Vec<u8>,
    /// The signed parameters (curve type, group, public key).
    #[serde(skip)]
    pub params: Vec<u8>,
}

/// What an ECDHE ServerKeyExchange cannot be read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExchangeError {
    /// Not a named curve (explicit curve parameters).
    NotNamedCurve(u8),
    /// Malformed.
    Wire(WireError),
}

impl From<WireError> for KeyExchangeError {
    fn from(e: WireError) -> Self {
        KeyExchangeError::Wire(e)
    }
}

impl EcdheParams {
    /// Parses an ECDHE ServerKeyExchange body (TLS 1.2, RFC 8422).
    pub fn parse(body: &[u8]) -> Result<Self, KeyExchangeError> {
        let mut c = Cursor::new(body, "ServerKeyExchange");
        let curve_type = c.u8()?;
        if curve_type != 3 {
            return Err(KeyExchangeError::NotNamedCurve(curve_type));
        }
        let group = c.u16()?;
        let public = c.vec8()?.to_vec();
        let params = body[..4 + public.len()].to_vec();
        let signature_algorithm = c.u16()?;
        let signature = c.vec16()?.to_vec();
        Ok(EcdheParams {
            group,
            public,
            signature_algorithm,
            signature,
            params,
        })
    }
}

/// A CertificateRequest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateRequest {
    /// Certificate types (1 RSA sign, 64 ECDSA sign).
    pub types: Vec<u8>,
    /// Signature algorithms the server accepts in CertificateVerify.
    pub signature_algorithms: Vec<u16>,
    /// How many CA names it lists.
    pub authorities: usize,
}

impl CertificateRequest {
    /// Parses a TLS 1.2 CertificateRequest body.
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(body, "CertificateRequest");
        let types = c.vec8()?.to_vec();
        let signature_algorithms = c
            .vec16()?
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        let mut names = Cursor::new(c.vec16()?, "CertificateRequest authorities");
        let mut authorities = 0;
        while !names.is_empty() {
            names.vec16()?;
            authorities += 1;
        }
        Ok(CertificateRequest {
            types,
            signature_algorithms,
            authorities,
        })
    }
}

/// A TLS alert description's name (RFC 5246 section 7.2, RFC 8446 section 6).
pub fn alert_name(description: u8) -> &'static str {
    match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown alert",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_hello_with_tls13_supported_versions_reads_as_tls13() {
        let mut b = vec![3, 3];
        b.extend([0u8; 32]);
        b.push(0);
        b.extend([0x13, 0x01, 0]);
        b.extend([0, 6, 0, 43, 0, 2, 3, 4]);
        let sh = ServerHello::parse(&b).unwrap();
        assert_eq!(sh.version, 0x0304);
        assert_eq!(sh.suite, 0x1301);
        assert_eq!(sh.extensions, [43]);
    }

    #[test]
    fn ecdhe_params_keep_the_signed_part() {
        let mut b = vec![3, 0, 23, 3, 4, 1, 2];
        b.extend([4, 3, 0, 2, 0xAA, 0xBB]);
        let p = EcdheParams::parse(&b).unwrap();
        assert_eq!(p.group, 23);
        assert_eq!(p.params, [3, 0, 23, 3, 4, 1, 2]);
        assert_eq!(p.signature_algorithm, 0x0403);
        assert_eq!(p.signature, [0xAA, 0xBB]);
        assert!(matches!(
            EcdheParams::parse(&[1, 0]),
            Err(KeyExchangeError::NotNamedCurve(1))
        ));
    }
}
