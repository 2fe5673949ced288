//! The bodies the service sends: EST's (RFC 7030) certs-only CMS and
//! multipart key + certificate, and the devtls format a MicroPython script
//! reads without an ASN.1 library.

use base64::Engine;

/// `Content-Type` of the devtls format.
pub const DEVTLS: &str = "application/x-devtls-renew";
/// `Content-Type` of a certs-only CMS (RFC 7030 §4.1.3).
pub const PKCS7: &str = "application/pkcs7-mime; smime-type=certs-only";
/// `Content-Type` of a raw DER certificate.
pub const PKIX_CERT: &str = "application/pkix-cert";
/// The multipart boundary of server-side key generation answers.
pub const BOUNDARY: &str = "devtls-est-7f3a9c";
/// The magic that starts the devtls format.
pub const MAGIC: &[u8; 4] = b"DTR1";

/// Base64 (standard alphabet, padded), as EST sends bodies.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 that may be wrapped in lines (EST bodies); `None` if it is not base64.
pub fn unbase64(text: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// The devtls format: `DTR1 | u32 cert_len | cert | u32 key_len | key | u64 not_after`,
/// big-endian (key_len 0 when the device sent a CSR).
pub fn devtls(cert: &[u8], key: Option<&[u8]>, not_after: i64) -> Vec<u8> {
    let key = key.unwrap_or_default();
    let mut out = Vec::with_capacity(4 + 4 + cert.len() + 4 + key.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(cert.len() as u32).to_be_bytes());
    out.extend_from_slice(cert);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(not_after.max(0) as u64).to_be_bytes());
    out
}

/// Reads the devtls format back: (cert, key, not_after). For tests and clients.
pub fn parse_devtls(body: &[u8]) -> Option<(Vec<u8>, Vec<u8>, u64)> {
    let rest = body.strip_prefix(MAGIC.as_slice())?;
    let (cert, rest) = take_prefixed(rest)?;
    let (key, rest) = take_prefixed(rest)?;
    let not_after = u64::from_be_bytes(rest.try_into().ok()?);
    Some((cert.to_vec(), key.to_vec(), not_after))
}

fn take_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let rest = &bytes[4..];
    Some((rest.get(..len)?, &rest[len..]))
}

/// A DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// id-signedData, 1.2.840.113549.1.7.2
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// id-data, 1.2.840.113549.1.7.1
const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];

/// A certs-only CMS SignedData (no signers, no content) holding `certs`, DER.
pub fn certs_only(certs: &[&[u8]]) -> Vec<u8> {
    let all: Vec<u8> = certs.iter().flat_map(|c| c.iter().copied()).collect();
    let signed_data = [
        tlv(0x02, &[1]),             // version 1
        tlv(0x31, &[]),              // digestAlgorithms: none
        tlv(0x30, &tlv(0x06, DATA)), // encapContentInfo: id-data, no content
        tlv(0xa0, &all),             // [0] IMPLICIT certificates
        tlv(0x31, &[]),              // signerInfos: none
    ]
    .concat();
    tlv(
        0x30,
        &[tlv(0x06, SIGNED_DATA), tlv(0xa0, &tlv(0x30, &signed_data))].concat(),
    )
}

/// Base64 wrapped at 64 characters with CRLF, as MIME bodies are.
pub fn base64_lines(bytes: &[u8]) -> String {
    let text = base64(bytes);
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// RFC 7030 §4.4.2: the key (PKCS#8) and the certificate (certs-only CMS), as
/// multipart/mixed with base64 parts. Returns (content type, body).
pub fn serverkeygen_multipart(key_pkcs8: &[u8], cert: &[u8]) -> (String, Vec<u8>) {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\
         --{BOUNDARY}\r\nContent-Type: {PKCS7}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\
         --{BOUNDARY}--\r\n",
        base64_lines(key_pkcs8),
        base64_lines(&certs_only(&[cert]))
    );
    (
        format!("multipart/mixed; boundary={BOUNDARY}"),
        body.into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devtls_round_trips() {
        let body = devtls(b"CERT", Some(b"KEY!"), 1_900_000_000);
        assert_eq!(&body[..4], b"DTR1");
        assert_eq!(&body[4..8], &[0, 0, 0, 4]);
        let (c, k, t) = parse_devtls(&body).unwrap();
        assert_eq!(
            (c.as_slice(), k.as_slice(), t),
            (&b"CERT"[..], &b"KEY!"[..], 1_900_000_000)
        );
        let csr = devtls(b"C", None, 5);
        assert_eq!(parse_devtls(&csr).unwrap().1, b"");
        assert!(parse_devtls(&body[..body.len() - 1]).is_none());
    }

    #[test]
    fn long_lengths_use_long_form() {
        let content = vec![7u8; 300];
        let t = tlv(0x04, &content);
        assert_eq!(&t[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(devtls_pki::der::element_len(&t), Some(t.len()));
    }

    #[test]
    fn base64_ignores_line_breaks() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(unbase64(base64_lines(&data).as_bytes()).unwrap(), data);
        assert!(unbase64(b"not base64!").is_none());
    }
}
