//! The two curves a fleet CA key in a token may use, what PKCS#11 calls
//! them, and the DER form of the raw signatures tokens return.

use sha2::Digest;

use crate::keys::KeyType;

use super::Error;

/// The curves a CA key may use (the device verifies P-256 and P-384).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

impl Curve {
    pub(super) fn of(key: KeyType) -> Result<Curve, Error> {
        match key {
            KeyType::P256 => Ok(Curve::P256),
            KeyType::P384 => Ok(Curve::P384),
            other => Err(Error::Unsupported(format!(
                "a CA key in a token is P-256 or P-384, not {other}"
            ))),
        }
    }

    /// The DER OID of the curve (CKA_EC_PARAMS).
    pub(super) fn params(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        }
    }

    pub(super) fn from_params(params: &[u8]) -> Option<Curve> {
        [Curve::P256, Curve::P384]
            .into_iter()
            .find(|c| c.params() == params)
    }

    /// Bytes of one coordinate (and of r and s).
    pub(super) fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    pub(super) fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    pub(super) fn key_type(self) -> KeyType {
        match self {
            Curve::P256 => KeyType::P256,
            Curve::P384 => KeyType::P384,
        }
    }

    pub(super) fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Curve::P256 => sha2::Sha256::digest(msg).to_vec(),
            Curve::P384 => sha2::Sha384::digest(msg).to_vec(),
        }
    }
}

/// DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` from raw r and s.
pub(super) fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(v: &[u8], out: &mut Vec<u8>) {
        let v = match v.iter().position(|&b| b != 0) {
            Some(i) => &v[i..],
            None => &[0u8][..],
        };
        out.push(0x02);
        let pad = v[0] & 0x80 != 0;
        out.push((v.len() + pad as usize) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(r.len() + s.len() + 6);
    integer(r, &mut body);
    integer(s, &mut body);
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_are_der_with_minimal_positive_integers() {
        let r = [0u8; 32];
        let mut s = [0xffu8; 32];
        s[0] = 0x80;
        let der = ecdsa_der(&r, &s);
        assert_eq!(&der[..5], &[0x30, 3 + 2 + 33, 0x02, 0x01, 0x00]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 2 + 33);
        let long = ecdsa_der(&[0x80; 48], &[0x80; 48]);
        assert_eq!(&long[..5], &[0x30, 102, 0x02, 49, 0x00]);
    }
}
