//! The words a device prints when TLS fails, as data.
//!
//! MicroPython's `ssl` on mbedTLS raises `OSError(code, 'MBEDTLS_ERR_...')`
//! or `ValueError(text)`. Diagnosis in devtls (connect, doctor, lint) names
//! the failure the way the device will, so a user can match what the device
//! printed to devtls's explanation. Source: `shared/device-facts.md`.

use serde::Serialize;

/// One error the device can raise, with what the script sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeviceError {
    /// The mbedTLS error code (negative), as in `OSError(-9984, ...)`.
    pub code: i32,
    /// The mbedTLS macro name.
    pub name: &'static str,
    /// What it usually means, in plain words.
    pub meaning: &'static str,
}

impl DeviceError {
    /// The line a MicroPython script prints for this error, e.g.
    /// `OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')`.
    pub fn as_oserror(&self) -> String {
        format!("OSError: ({}, '{}')", self.code, self.name)
    }

    /// The code in mbedTLS's hexadecimal spelling, e.g. `-0x7780`.
    pub fn hex(&self) -> String {
        format!("-0x{:04X}", -self.code)
    }
}

/// Looks an error up by its code (`-9984` or `0x2700` both work).
pub fn by_code(code: i32) -> Option<&'static DeviceError> {
    let code = -code.abs();
    ALL.iter().find(|e| e.code == code)
}

macro_rules! errors {
    ($($ident:ident = $code:expr, $name:expr, $meaning:expr;)*) => {
        $(
            #[doc = $meaning]
            pub const $ident: DeviceError = DeviceError { code: -$code, name: $name, meaning: $meaning };
        )*
        /// Every error in the table.
        pub const ALL: &[DeviceError] = &[$($ident),*];
    };
}

errors! {
    FATAL_ALERT = 0x7780, "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE",
        "the peer rejected the device: no common version, suite, group or signature algorithm, a missing client certificate, or the device's certificate was refused";
    CERT_VERIFY_FAILED = 0x2700, "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED",
        "the peer's certificate failed verification (shown as a ValueError with the verify text)";
    INVALID_RECORD = 0x7200, "MBEDTLS_ERR_SSL_INVALID_RECORD",
        "the peer does not speak TLS";
    CONN_EOF = 0x7280, "MBEDTLS_ERR_SSL_CONN_EOF",
        "the peer closed the connection during the handshake";
    NO_CLIENT_CERTIFICATE = 0x7480, "MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE",
        "the server demanded a client certificate and the device had none to send";
    HANDSHAKE_FAILURE = 0x6E00, "MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE",
        "the device as server found nothing in common with the client";
    HELLO_VERIFY_REQUIRED = 0x6A80, "MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED",
        "DTLS server, first attempt: expected, wrap the socket again to receive the ClientHello with the cookie";
    BUFFER_TOO_SMALL = 0x6A00, "MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL",
        "the device's own certificate chain does not fit its 4096-byte output buffer";
    RSA_PSS = 0x2300, "MBEDTLS_ERR_X509_INVALID_ALG",
        "an RSA-PSS signature in the peer chain";
    CRITICAL_EXTENSION = 0x2562, "MBEDTLS_ERR_X509_INVALID_EXTENSIONS+MBEDTLS_ERR_ASN1_UNEXPECTED_TAG",
        "an extension the device's parser does not know (nameConstraints, most often) is marked critical";
    CRITICAL_POLICIES = 0x2080, "MBEDTLS_ERR_X509_FEATURE_UNAVAILABLE",
        "a critical certificatePolicies extension other than anyPolicy in the peer chain";
    UNKNOWN_PK_ALG = 0x3C80, "MBEDTLS_ERR_PK_UNKNOWN_PK_ALG",
        "an Ed25519 (or other unknown) key in the peer chain or key file";
    BAD_CERTIFICATE = 0x7A00, "MBEDTLS_ERR_SSL_BAD_CERTIFICATE",
        "the peer's certificate passed X.509 verification but its keyUsage/extendedKeyUsage does not allow the role (measured: mbedTLS returns this instead of -0x2700 when usage is the only problem)";
    BAD_PROTOCOL_VERSION = 0x6E80, "MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION",
        "the server chose a protocol version the device does not speak";
    ILLEGAL_PARAMETER = 0x6600, "MBEDTLS_ERR_SSL_ILLEGAL_PARAMETER",
        "the server chose a suite, group or signature algorithm the device did not offer";
    DECODE_ERROR = 0x7300, "MBEDTLS_ERR_SSL_DECODE_ERROR",
        "the server sent a handshake message the device cannot read";
    ECP_VERIFY_FAILED = 0x4E00, "MBEDTLS_ERR_ECP_VERIFY_FAILED",
        "the server's ECDSA key exchange signature does not verify with its certificate's key";
    RSA_VERIFY_FAILED = 0x4380, "MBEDTLS_ERR_RSA_VERIFY_FAILED",
        "the server's RSA key exchange signature does not verify with its certificate's key";
    TIMEOUT = 0x6800, "MBEDTLS_ERR_SSL_TIMEOUT",
        "DTLS: the peer never completed the handshake (e.g. a server that silently waits for a certificate the device did not send)";
    INVALID_CERT_PEM = 0x2180, "MBEDTLS_ERR_X509_INVALID_FORMAT",
        "a PEM file where the device needs DER (the script sees ValueError('invalid cert'))";
    UNKNOWN_SIG_ALG = 0x262E, "MBEDTLS_ERR_X509_UNKNOWN_SIG_ALG+MBEDTLS_ERR_OID_NOT_FOUND",
        "a signature algorithm the device's build does not know (Ed25519): the TLS layer skips such a certificate in the peer's chain; as the anchor it does not load";
    UNKNOWN_NAMED_CURVE = 0x3A00, "MBEDTLS_ERR_PK_UNKNOWN_NAMED_CURVE",
        "a key on a curve the device's build does not compile (Brainpool, Curve25519)";
    X509_FATAL_ERROR = 0x3000, "MBEDTLS_ERR_X509_FATAL_ERROR",
        "verification stopped: the path holds more intermediates than mbedTLS follows (MBEDTLS_X509_MAX_INTERMEDIATE_CA)";
}

/// A bare `errno` the script sees when the socket under mbedTLS fails
/// (no mbedTLS code): `OSError(32)`, printed `OSError: 32`, or, for the
/// numbers MicroPython names, `OSError: [Errno 104] ECONNRESET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Errno {
    /// The errno (positive), as in `OSError(32)`.
    pub code: i32,
    /// Its name.
    pub name: &'static str,
    /// Whether MicroPython's errno table names it in the printed line
    /// (the unix port names ECONNRESET but not EPIPE).
    pub named_when_printed: bool,
    /// What it means here.
    pub meaning: &'static str,
}

impl Errno {
    /// The last line of the traceback, e.g. `OSError: 32`.
    pub fn as_oserror(&self) -> String {
        if self.named_when_printed {
            format!("OSError: [Errno {}] {}", self.code, self.name)
        } else {
            format!("OSError: {}", self.code)
        }
    }
}

/// `EPIPE`: the peer closed while the device was still writing its flight.
pub const EPIPE: Errno = Errno {
    code: 32,
    name: "EPIPE",
    named_when_printed: false,
    meaning: "the peer closed the connection while the device was still writing (its alert unread)",
};

/// `ECONNRESET`: the peer closed with the device's bytes unread, so its
/// system answered the device with a reset.
pub const ECONNRESET: Errno = Errno {
    code: 104,
    name: "ECONNRESET",
    named_when_printed: true,
    meaning: "the peer closed the connection with the device's bytes unread (a reset)",
};

/// One exception a script can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// `OSError(code, 'MBEDTLS_ERR_...')`.
    Mbedtls(DeviceError),
    /// `OSError(errno)`: the socket under mbedTLS failed first.
    Errno(Errno),
}

impl Raised {
    /// The number in the `OSError` (negative for mbedTLS, positive errno).
    pub fn code(&self) -> i32 {
        match self {
            Raised::Mbedtls(e) => e.code,
            Raised::Errno(e) => e.code,
        }
    }

    /// The mbedTLS macro name or the errno's name.
    pub fn name(&self) -> &'static str {
        match self {
            Raised::Mbedtls(e) => e.name,
            Raised::Errno(e) => e.name,
        }
    }

    /// The last line of the script's traceback.
    pub fn as_oserror(&self) -> String {
        match self {
            Raised::Mbedtls(e) => e.as_oserror(),
            Raised::Errno(e) => e.as_oserror(),
        }
    }
}

impl Serialize for Raised {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Raised", 4)?;
        st.serialize_field(
            "kind",
            match self {
                Raised::Mbedtls(_) => "mbedtls",
                Raised::Errno(_) => "errno",
            },
        )?;
        st.serialize_field("code", &self.code())?;
        st.serialize_field("name", self.name())?;
        st.serialize_field("printed", &self.as_oserror())?;
        st.end()
    }
}

/// Every exception the script may see for one failure: more than one
/// where the peer's timing decides which the device meets first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// The possible exceptions, the one most servers give first.
    pub raised: &'static [Raised],
    /// What decides between them.
    pub decided_by: &'static str,
}

impl Outcomes {
    /// The traceback lines, joined with ` or `.
    pub fn printed(&self) -> String {
        self.raised
            .iter()
            .map(Raised::as_oserror)
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// A server refuses the device's client certificate (or the device sent
/// none). The server sends its alert and closes while the device is still
/// writing its ClientKeyExchange and CertificateVerify: a device that reads the alert
/// first raises FATAL_ALERT (OpenSSL), one whose write meets the closed
/// connection first raises EPIPE (measured against `devtls serve` and a
/// MicroPython server; docs/device-behaviour.md).
pub const CLIENT_CERT_REFUSED: Outcomes = Outcomes {
    raised: &[Raised::Mbedtls(FATAL_ALERT), Raised::Errno(EPIPE)],
    decided_by: "the server's timing: a server that closes right after its alert, while the device still writes its CertificateVerify, gives EPIPE (devtls serve, a MicroPython server); one that lets the device finish writing gives the alert (OpenSSL)",
};

/// The device's key does not belong to its certificate: its
/// CertificateVerify does not verify and the server ends the handshake
/// after reading it (docs/device-behaviour.md).
pub const KEY_MISMATCH: Outcomes = Outcomes {
    raised: &[
        Raised::Mbedtls(FATAL_ALERT),
        Raised::Errno(ECONNRESET),
        Raised::Errno(EPIPE),
    ],
    decided_by: "how and when the server closes: OpenSSL's alert gives FATAL_ALERT; devtls serve's alert gives FATAL_ALERT or, when it closes while the device still writes, EPIPE; a MicroPython server closes with the device's Finished unread, which gives ECONNRESET",
};

/// The verification flags of `mbedtls_x509_crt_verify` and the line
/// `mbedtls_x509_crt_verify_info` writes for each, in its order. MicroPython
/// raises them as `ValueError` text, one line per flag.
pub mod flags {
    /// The certificate's notAfter is before the clock.
    pub const EXPIRED: u32 = 0x01;
    /// The host name matches no SAN (or, without SAN, no CN).
    pub const CN_MISMATCH: u32 = 0x04;
    /// No path to the anchor, or a signature on it does not check.
    pub const NOT_TRUSTED: u32 = 0x08;
    /// The certificate's notBefore is after the clock.
    pub const FUTURE: u32 = 0x0200;
    /// keyUsage does not allow the role (set by the TLS layer).
    pub const KEY_USAGE: u32 = 0x0800;
    /// extendedKeyUsage does not allow the role (set by the TLS layer).
    pub const EXT_KEY_USAGE: u32 = 0x1000;
    /// A signature hash the profile refuses.
    pub const BAD_MD: u32 = 0x4000;
    /// A signature algorithm the profile refuses.
    pub const BAD_PK: u32 = 0x8000;
    /// A key (type, curve, RSA size) the profile refuses.
    pub const BAD_KEY: u32 = 0x01_0000;
    /// What `mbedtls_x509_crt_verify` reports when it stops on a fatal error.
    pub const FATAL: u32 = u32::MAX;

    /// Each flag with the line `mbedtls_x509_crt_verify_info` writes for it.
    pub const TEXTS: &[(u32, &str)] = &[
        (EXPIRED, "The certificate validity has expired"),
        (0x02, "The certificate has been revoked (is on a CRL)"),
        (
            CN_MISMATCH,
            "The certificate Common Name (CN) does not match with the expected CN",
        ),
        (
            NOT_TRUSTED,
            "The certificate is not correctly signed by the trusted CA",
        ),
        (0x10, "The CRL is not correctly signed by the trusted CA"),
        (0x20, "The CRL is expired"),
        (0x40, "Certificate was missing"),
        (0x80, "Certificate verification was skipped"),
        (0x0100, "Other reason (can be used by verify callback)"),
        (FUTURE, "The certificate validity starts in the future"),
        (0x0400, "The CRL is from the future"),
        (KEY_USAGE, "Usage does not match the keyUsage extension"),
        (
            EXT_KEY_USAGE,
            "Usage does not match the extendedKeyUsage extension",
        ),
        (0x2000, "Usage does not match the nsCertType extension"),
        (
            BAD_MD,
            "The certificate is signed with an unacceptable hash.",
        ),
        (
            BAD_PK,
            "The certificate is signed with an unacceptable PK alg (eg RSA vs ECDSA).",
        ),
        (
            BAD_KEY,
            "The certificate is signed with an unacceptable key (eg bad curve, RSA too short).",
        ),
        (0x02_0000, "The CRL is signed with an unacceptable hash."),
        (
            0x04_0000,
            "The CRL is signed with an unacceptable PK alg (eg RSA vs ECDSA).",
        ),
        (
            0x08_0000,
            "The CRL is signed with an unacceptable key (eg bad curve, RSA too short).",
        ),
    ];

    /// The line for one flag.
    pub fn text(flag: u32) -> &'static str {
        TEXTS
            .iter()
            .find(|(f, _)| *f == flag)
            .map_or("Unknown reason", |(_, t)| t)
    }

    /// The lines `mbedtls_x509_crt_verify_info` writes for `flags`, in its order.
    pub fn lines(flags: u32) -> Vec<&'static str> {
        TEXTS
            .iter()
            .filter(|(f, _)| flags & f != 0)
            .map(|(_, t)| *t)
            .collect()
    }

    /// What the script prints for a verification that failed with `flags`:
    /// `ValueError:` and one line per flag.
    pub fn value_error(flags: u32) -> String {
        let mut out = String::from("ValueError:");
        for line in lines(flags) {
            out.push('\n');
            out.push_str(line);
        }
        out
    }
}

/// The `ValueError` texts MicroPython's ssl module raises when a file given
/// to `load_cert_chain`/`load_verify_locations` does not parse. A failed
/// verification shows `mbedtls_x509_crt_verify_info`'s lines instead
/// ([`flags::text`], [`flags::value_error`]); see docs/device-behaviour.md.
pub mod verify_text {
    /// The certificate could not be parsed (e.g. PEM given where DER is needed).
    pub const INVALID_CERT: &str = "invalid cert";
    /// The key could not be parsed (PEM, encrypted, truncated, Ed25519).
    pub const INVALID_KEY: &str = "invalid key";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_names_are_joined_as_micropython_prints_them() {
        // MicroPython prints `A+B` for a combined code (no spaces).
        for e in ALL {
            assert!(!e.name.contains(' '), "{}", e.name);
        }
        assert_eq!(
            CRITICAL_EXTENSION.name,
            "MBEDTLS_ERR_X509_INVALID_EXTENSIONS+MBEDTLS_ERR_ASN1_UNEXPECTED_TAG"
        );
    }

    #[test]
    fn errnos_print_as_the_unix_port_prints_them() {
        assert_eq!(EPIPE.as_oserror(), "OSError: 32");
        assert_eq!(ECONNRESET.as_oserror(), "OSError: [Errno 104] ECONNRESET");
        assert_eq!(
            CLIENT_CERT_REFUSED.printed(),
            "OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE') or OSError: 32"
        );
    }

    #[test]
    fn codes_match_what_scripts_print() {
        assert_eq!(FATAL_ALERT.code, -30592);
        assert_eq!(CERT_VERIFY_FAILED.code, -9984);
        assert_eq!(CERT_VERIFY_FAILED.hex(), "-0x2700");
        assert_eq!(by_code(9984), Some(&CERT_VERIFY_FAILED));
        assert_eq!(
            FATAL_ALERT.as_oserror(),
            "OSError: (-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')"
        );
    }
}
