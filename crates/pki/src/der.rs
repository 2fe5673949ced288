//! Just enough DER framing to split concatenated structures and spot trailing bytes.

/// Length in bytes of the DER element at the start of `bytes` (tag, length and content),
/// or `None` when the bytes do not start with a complete definite-length element.
pub fn element_len(bytes: &[u8]) -> Option<usize> {
    let (&tag, rest) = bytes.split_first()?;
    // High-tag-number form never appears in the structures devtls reads.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (content_len, header_len) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        // 0x80 is the indefinite form (BER, not DER); more than 4 length bytes is absurd here.
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, 2 + n)
    };
    let total = header_len.checked_add(content_len)?;
    (total <= bytes.len()).then_some(total)
}

/// The first complete DER element of `bytes`.
pub fn first_element(bytes: &[u8]) -> Option<&[u8]> {
    element_len(bytes).map(|n| &bytes[..n])
}

/// Splits back-to-back DER elements. Returns the elements and any bytes left
/// over that do not form a complete element.
pub fn split_concatenated(mut bytes: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut elements = Vec::new();
    while let Some(n) = element_len(bytes) {
        elements.push(&bytes[..n]);
        bytes = &bytes[n..];
    }
    (elements, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        assert_eq!(element_len(&[0x30, 0x00]), Some(2));
        assert_eq!(element_len(&[0x30, 0x03, 1, 2, 3, 9]), Some(5));
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.extend(vec![0; 256]);
        assert_eq!(element_len(&long), Some(260));
        assert_eq!(element_len(&long[..100]), None);
        assert_eq!(element_len(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(element_len(&[]), None);
    }

    #[test]
    fn concatenation_and_leftovers() {
        let (parts, rest) = split_concatenated(&[0x30, 0x01, 7, 0x30, 0x00, 0xff]);
        assert_eq!(parts, vec![&[0x30, 0x01, 7][..], &[0x30, 0x00][..]]);
        assert_eq!(rest, &[0xff]);
    }
}
