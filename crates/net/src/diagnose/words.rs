//! What the device raises for each reason, as the client and as the server
//! (measured: docs/device-behaviour.md).

use super::*;

pub(super) type Parts = (Reason, String, String, Option<DeviceWords>);

/// What the device, as the client, raises in `wrap_socket` when devtls,
/// its server, fails it for `reason` (measured: docs/device-behaviour.md).
pub(super) fn device_as_client(reason: Reason) -> Option<DeviceWords> {
    Some(match reason {
        // devtls refused the device's certificate, or it sent none: its
        // alert and close meet the device still writing its flight.
        Reason::ClientCertMissing
        | Reason::ClientCertRejected
        | Reason::Expired
        | Reason::NotYetValid
        | Reason::UnknownCa
        | Reason::Revoked
        | Reason::UnacceptableAlgorithm
        | Reason::RefusedKeyType
        | Reason::Unverifiable => DeviceWords::any_of(device_error::CLIENT_CERT_REFUSED),
        Reason::KeyMismatch => DeviceWords::any_of(device_error::KEY_MISMATCH),
        // The device refused devtls's certificate: its own verify failure.
        Reason::Refused | Reason::WrongHostName => {
            DeviceWords::oserror(&device_error::CERT_VERIFY_FAILED)
        }
        Reason::NoCommonVersion | Reason::NothingInCommon => {
            DeviceWords::oserror(&device_error::FATAL_ALERT)
        }
        Reason::NotTls
        | Reason::PeerClosed
        | Reason::Timeout
        | Reason::ConnectFailed
        | Reason::Probe
        | Reason::Other => return None,
    })
}

/// What the device, as the server, raises in `wrap_socket(...,
/// server_side=True)` when its client (devtls) fails the handshake for
/// `reason`; `None` when the device sees nothing of it (no connection, or
/// it is not TLS) or devtls cannot tell.
pub(super) fn device_as_server(reason: Reason) -> Option<DeviceWords> {
    let error = match reason {
        // devtls refused the device's certificate or found nothing it
        // accepts: it sends a fatal alert, which the device reads.
        Reason::WrongHostName
        | Reason::Expired
        | Reason::NotYetValid
        | Reason::UnknownCa
        | Reason::Revoked
        | Reason::UnacceptableAlgorithm
        | Reason::RefusedKeyType
        | Reason::Unverifiable
        | Reason::KeyMismatch => &device_error::FATAL_ALERT,
        // The device demanded a client certificate and devtls had none.
        Reason::ClientCertMissing => &device_error::NO_CLIENT_CERTIFICATE,
        // The device refused devtls's client certificate: its own verify
        // failure (a ValueError with the verify text).
        Reason::ClientCertRejected => &device_error::CERT_VERIFY_FAILED,
        // The device found nothing in common with devtls's hello.
        Reason::NoCommonVersion | Reason::NothingInCommon => &device_error::HANDSHAKE_FAILURE,
        Reason::NotTls
        | Reason::PeerClosed
        | Reason::Timeout
        | Reason::ConnectFailed
        | Reason::Refused
        | Reason::Probe
        | Reason::Other => return None,
    };
    Some(DeviceWords::oserror(error))
}
