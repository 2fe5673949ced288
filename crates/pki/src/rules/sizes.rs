//! The TLS Certificate message against the device's buffers.

use crate::profile::Profile;

/// Size of a TLS 1.2 Certificate handshake message carrying certificates of
/// these DER sizes: 4 bytes of handshake header, 3 of list length, and each
/// certificate with its own 3-byte length.
pub fn certificate_message_len(der_sizes: impl IntoIterator<Item = usize>) -> usize {
    4 + 3 + der_sizes.into_iter().map(|n| 3 + n).sum::<usize>()
}

/// What the device receives must fit its input buffer (else the handshake
/// fails while reading the peer's Certificate message).
pub fn fits_input(profile: &Profile, message_len: usize) -> bool {
    message_len <= profile.input_buffer
}

/// What the device sends of its own chain must fit its output buffer
/// (else `MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL`).
pub fn fits_output(profile: &Profile, message_len: usize) -> bool {
    message_len <= profile.output_buffer
}

/// How many of the certificates in its own chain file the device presents.
pub fn presented_by_device(profile: &Profile, in_file: usize) -> usize {
    in_file.min(profile.presented_chain_len as usize)
}

/// Whether a server's path holds more intermediates than the device follows.
pub fn too_many_intermediates(profile: &Profile, intermediates: usize) -> bool {
    intermediates > profile.max_intermediates as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::OPENMV;

    #[test]
    fn message_length_counts_headers() {
        assert_eq!(certificate_message_len([]), 7);
        assert_eq!(certificate_message_len([500, 1000]), 7 + 503 + 1003);
        assert!(fits_output(&OPENMV, 4096) && !fits_output(&OPENMV, 4097));
        assert!(fits_input(&OPENMV, 16384) && !fits_input(&OPENMV, 16385));
    }
}
