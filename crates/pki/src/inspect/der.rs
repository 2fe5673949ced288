//! Minimal DER reading and writing beyond x509-parser, enough for key
//! structures, bounds-checked: a TLV, a BIT STRING's bytes, an INTEGER's
//! digits, an OID's dotted form.

/// A DER INTEGER's digits without the leading zero that keeps it positive.
pub(super) fn strip_sign_byte(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => bytes,
    }
}

/// One DER element: its tag, its content and the whole encoding.
pub(super) struct Tlv<'a> {
    pub(super) tag: u8,
    pub(super) content: &'a [u8],
    pub(super) raw: &'a [u8],
}

/// The DER element at the start of `bytes` and what follows it.
pub(super) fn tlv(bytes: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let total = crate::der::element_len(bytes)?;
    let header = match *bytes.get(1)? {
        n if n < 0x80 => 2,
        n => 2 + (n & 0x7f) as usize,
    };
    let raw = bytes.get(..total)?;
    Some((
        Tlv {
            tag: bytes[0],
            content: raw.get(header..)?,
            raw,
        },
        &bytes[total..],
    ))
}

/// The bytes of a BIT STRING's content with no unused bits.
pub(super) fn bit_string_bytes(content: &[u8]) -> Option<&[u8]> {
    match content {
        [0, rest @ ..] => Some(rest),
        _ => None,
    }
}

pub(super) fn bit_string_bytes_tlv<'a>(t: &Tlv<'a>) -> Option<&'a [u8]> {
    (t.tag == 0x03).then_some(())?;
    bit_string_bytes(t.content)
}

pub(super) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Dotted form of an OBJECT IDENTIFIER's content bytes.
pub(super) fn oid_string(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in content {
        value = value.checked_mul(128)? | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            arcs.push(value);
            value = 0;
        }
    }
    if content.is_empty() || content.last()? & 0x80 != 0 {
        return None;
    }
    let first = arcs[0];
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in &arcs[1..] {
        out.push('.');
        out.push_str(&arc.to_string());
    }
    Some(out)
}
