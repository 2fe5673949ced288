//! The device's ClientHello, written from the profile's data, and a parser
//! that lists a ClientHello's fields (to compare two hellos field by field).
//!
//! mbedTLS 3.6 (`ssl_write_client_hello_body` in `library/ssl_client.c`)
//! writes, for a TLS 1.2-only client: version 3,3; 32 random bytes (the first
//! four the clock); an empty session id; the cookie (DTLS); the suites in
//! order then the renegotiation SCSV; the null compression method; then the
//! extensions server_name, supported_groups, signature_algorithms,
//! ec_point_formats. docs/device-behaviour.md records the measured hello.

use devtls_pki::profile::{HelloExtension, Profile, TlsVersion};

use super::wire::{Cursor, Transport, WireError};

/// The renegotiation SCSV a TLS 1.2 client appends to its suites.
pub const RENEGOTIATION_SCSV: u16 = 0x00FF;

/// What a ClientHello offers. [`Offer::device`] is the device's own; the
/// diagnosis widens a copy to find what a server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// TLS or DTLS.
    pub transport: Transport,
    /// Cipher suite code points in order.
    pub suites: Vec<u16>,
    /// The renegotiation SCSV follows the suites.
    pub scsv: bool,
    /// supported_groups code points in order.
    pub groups: Vec<u16>,
    /// signature_algorithms code points in order.
    pub signature_algorithms: Vec<u16>,
    /// The extensions, in order.
    pub extensions: Vec<HelloExtension>,
    /// ec_point_formats.
    pub point_formats: Vec<u8>,
    /// The first four random bytes are the clock.
    pub random_starts_with_time: bool,
    /// Extensions the device never sends, appended by a widened offer
    /// (e.g. supported_versions and key_share to see whether a server
    /// answers TLS 1.3).
    pub extra_extensions: Vec<(u16, Vec<u8>)>,
}

impl Offer {
    /// The device's own offer, from its profile (`None` if the profile does
    /// not describe its hello or it does not speak this transport).
    pub fn device(profile: &Profile, transport: Transport) -> Option<Offer> {
        let shape = profile.hello?;
        let version = match transport {
            Transport::Tls => TlsVersion::Tls12,
            Transport::Dtls => TlsVersion::Dtls12,
        };
        if !profile.speaks(version) {
            return None;
        }
        Some(Offer {
            transport,
            suites: profile.cipher_suites.iter().map(|s| s.code).collect(),
            scsv: shape.renegotiation_scsv,
            groups: profile.groups.iter().map(|c| c.tls_group()).collect(),
            signature_algorithms: shape.signature_algorithms.to_vec(),
            extensions: shape.extensions.to_vec(),
            point_formats: shape.point_formats.to_vec(),
            random_starts_with_time: shape.random_starts_with_time,
            extra_extensions: Vec::new(),
        })
    }

    /// The offer's client random: the clock then random bytes, or all random.
    pub fn random(&self) -> [u8; 32] {
        let mut r = [0u8; 32];
        // A failing system RNG leaves zeros: harmless for a probe.
        let _ = aws_lc_rs::rand::fill(&mut r);
        if self.random_starts_with_time {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            r[..4].copy_from_slice(&now.to_be_bytes());
        }
        r
    }

    /// The ClientHello body (no handshake header).
    pub fn client_hello(
        &self,
        server_name: Option<&str>,
        random: &[u8; 32],
        cookie: &[u8],
    ) -> Vec<u8> {
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(&self.transport.version().to_be_bytes());
        b.extend_from_slice(random);
        b.push(0); // session id: none on a fresh handshake
        if self.transport == Transport::Dtls {
            b.push(cookie.len() as u8);
            b.extend_from_slice(cookie);
        }
        let mut suites: Vec<u16> = self.suites.clone();
        if self.scsv {
            suites.push(RENEGOTIATION_SCSV);
        }
        put_u16_list16(&mut b, &suites);
        b.extend_from_slice(&[1, 0]); // compression: null
        let mut exts = Vec::new();
        for ext in &self.extensions {
            let data = match ext {
                HelloExtension::ServerName => match server_name {
                    Some(name) => {
                        let mut d = Vec::new();
                        d.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
                        d.push(0); // host_name
                        d.extend_from_slice(&(name.len() as u16).to_be_bytes());
                        d.extend_from_slice(name.as_bytes());
                        d
                    }
                    None => continue,
                },
                HelloExtension::SupportedGroups => {
                    let mut d = Vec::new();
                    put_u16_list16(&mut d, &self.groups);
                    d
                }
                HelloExtension::SignatureAlgorithms => {
                    let mut d = Vec::new();
                    put_u16_list16(&mut d, &self.signature_algorithms);
                    d
                }
                HelloExtension::EcPointFormats => {
                    let mut d = vec![self.point_formats.len() as u8];
                    d.extend_from_slice(&self.point_formats);
                    d
                }
            };
            put_extension(&mut exts, ext.code(), &data);
        }
        for (code, data) in &self.extra_extensions {
            put_extension(&mut exts, *code, data);
        }
        if !exts.is_empty() {
            b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
            b.extend_from_slice(&exts);
        }
        b
    }
}

fn put_extension(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn put_u16_list16(out: &mut Vec<u8>, list: &[u16]) {
    out.extend_from_slice(&((list.len() * 2) as u16).to_be_bytes());
    for v in list {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// A ClientHello's fields, as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloFields {
    /// Record layer version of the first record.
    pub record_version: u16,
    /// client_version.
    pub version: u16,
    /// The 32 random bytes.
    pub random: Vec<u8>,
    /// The session id.
    pub session_id: Vec<u8>,
    /// The DTLS cookie (`None` for TLS).
    pub cookie: Option<Vec<u8>>,
    /// Suites in order (SCSV included).
    pub suites: Vec<u16>,
    /// Compression methods.
    pub compression: Vec<u8>,
    /// Extensions in order: code and data.
    pub extensions: Vec<(u16, Vec<u8>)>,
}

impl ClientHelloFields {
    /// Parses the first record(s) a client sends: the record header, the
    /// handshake header and the ClientHello body (one unfragmented message).
    pub fn parse_record(transport: Transport, record: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(record, "ClientHello record");
        let content_type = c.u8()?;
        let record_version = c.u16()?;
        if content_type != super::wire::content::HANDSHAKE {
            return Err(WireError::Malformed("ClientHello record (not handshake)"));
        }
        if transport == Transport::Dtls {
            c.take(8)?; // epoch, sequence
        }
        let payload = c.vec16()?;
        let mut h = Cursor::new(payload, "ClientHello message");
        if h.u8()? != super::wire::hs::CLIENT_HELLO {
            return Err(WireError::Malformed("ClientHello message (another type)"));
        }
        let len = h.u24()?;
        if transport == Transport::Dtls {
            h.take(8)?; // message_seq, fragment offset and length
        }
        let body = h.take(len)?;
        let mut f = Self::parse_body(transport, body)?;
        f.record_version = record_version;
        Ok(f)
    }

    /// Parses a ClientHello body.
    pub fn parse_body(transport: Transport, body: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(body, "ClientHello");
        let version = c.u16()?;
        let random = c.take(32)?.to_vec();
        let session_id = c.vec8()?.to_vec();
        let cookie = match transport {
            Transport::Dtls => Some(c.vec8()?.to_vec()),
            Transport::Tls => None,
        };
        let suites = u16_list(c.vec16()?);
        let compression = c.vec8()?.to_vec();
        let mut extensions = Vec::new();
        if !c.is_empty() {
            let mut e = Cursor::new(c.vec16()?, "ClientHello extensions");
            while !e.is_empty() {
                let code = e.u16()?;
                extensions.push((code, e.vec16()?.to_vec()));
            }
        }
        Ok(ClientHelloFields {
            record_version: 0,
            version,
            random,
            session_id,
            cookie,
            suites,
            compression,
            extensions,
        })
    }

    /// An extension's data.
    pub fn extension(&self, code: u16) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    /// Extension code points in order.
    pub fn extension_order(&self) -> Vec<u16> {
        self.extensions.iter().map(|(c, _)| *c).collect()
    }

    /// supported_groups, in order.
    pub fn groups(&self) -> Vec<u16> {
        self.extension(10)
            .map(|d| u16_list(d.get(2..).unwrap_or_default()))
            .unwrap_or_default()
    }

    /// signature_algorithms, in order.
    pub fn signature_algorithms(&self) -> Vec<u16> {
        self.extension(13)
            .map(|d| u16_list(d.get(2..).unwrap_or_default()))
            .unwrap_or_default()
    }

    /// ec_point_formats.
    pub fn point_formats(&self) -> Vec<u8> {
        self.extension(11)
            .map(|d| d.get(1..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }

    /// The host name in server_name.
    pub fn server_name(&self) -> Option<String> {
        let d = self.extension(0)?;
        let name = d.get(5..)?;
        Some(String::from_utf8_lossy(name).into_owned())
    }
}

fn u16_list(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use devtls_pki::profile::{MODERN, OPENMV};

    #[test]
    fn the_openmv_hello_is_mbedtls_36s() {
        let offer = Offer::device(&OPENMV, Transport::Tls).unwrap();
        let random = [7u8; 32];
        let body = offer.client_hello(Some("openmv.local"), &random, &[]);
        let f = ClientHelloFields::parse_body(Transport::Tls, &body).unwrap();
        assert_eq!(f.version, 0x0303);
        assert!(f.session_id.is_empty());
        assert_eq!(
            f.suites,
            [
                0xC02C, 0xC030, 0xC024, 0xC028, 0xC00A, 0xC014, 0xC02B, 0xC02F, 0xC023, 0xC027,
                0xC009, 0xC013, 0x009D, 0x003D, 0x0035, 0x009C, 0x003C, 0x002F, 0x00FF
            ]
        );
        assert_eq!(f.compression, [0]);
        assert_eq!(f.extension_order(), [0, 10, 13, 11]);
        assert_eq!(f.groups(), [23, 24, 25]);
        assert_eq!(
            f.signature_algorithms(),
            [0x0603, 0x0601, 0x0503, 0x0501, 0x0403, 0x0401]
        );
        assert_eq!(f.point_formats(), [0]);
        assert_eq!(f.server_name().as_deref(), Some("openmv.local"));
    }

    #[test]
    fn no_hostname_no_server_name_and_dtls_carries_the_cookie() {
        let offer = Offer::device(&OPENMV, Transport::Dtls).unwrap();
        let body = offer.client_hello(None, &[0; 32], &[9, 9, 9]);
        let f = ClientHelloFields::parse_body(Transport::Dtls, &body).unwrap();
        assert_eq!(f.version, 0xFEFD);
        assert_eq!(f.cookie.as_deref(), Some(&[9u8, 9, 9][..]));
        assert_eq!(f.extension_order(), [10, 13, 11]);
        assert!(Offer::device(&MODERN, Transport::Tls).is_none());
    }
}
