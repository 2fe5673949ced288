//! Rules on a chain's size against the device's record buffers.

use super::*;

/// Sizes of the Certificate handshake message: what the device sends of its
/// own chain must fit its output buffer, what it receives its input buffer.
pub(super) fn chain_size_rules(
    file: &Inspection<'_>,
    all: &[Inspection<'_>],
    role: LintRole,
    p: &Profile,
    out: &mut Vec<Finding>,
) {
    let certs: Vec<&CertInfo> = file.certificates().collect();
    let Some(leaf) = certs.first() else { return };
    if !is_end_entity(leaf, all) {
        return;
    }
    let name = file.input.file;
    let presented = sizes::presented_by_device(p, certs.len());
    let own = sizes::certificate_message_len(certs[..presented].iter().map(|c| c.der_size));
    if !sizes::fits_output(p, own) {
        out.push(finding(
            Severity::Error,
            "chain-over-output-buffer",
            name,
            format!(
                "presented by the device, this chain ({presented} certificate{}) makes a \
                 {own}-byte Certificate message, over the {}-byte output buffer of the {} \
                 profile ({} {})",
                if presented == 1 { "" } else { "s" },
                p.output_buffer,
                p.name,
                device_error::BUFFER_TOO_SMALL.hex(),
                device_error::BUFFER_TOO_SMALL.name
            ),
            "use fewer names or a smaller key (P-256), or a shorter chain".into(),
        ));
    }
    if role == LintRole::Client {
        return;
    }
    let received = sizes::certificate_message_len(certs.iter().map(|c| c.der_size));
    if !sizes::fits_input(p, received) {
        out.push(finding(
            Severity::Warning,
            "chain-over-input-buffer",
            name,
            format!(
                "sent to the device, this chain makes a {received}-byte Certificate message, \
                 over the {}-byte input buffer of the {} profile",
                p.input_buffer, p.name
            ),
            "serve a shorter chain (leaf and intermediates only, no root)".into(),
        ));
    }
    let intermediates = certs.iter().skip(1).filter(|c| !c.self_issued).count();
    if sizes::too_many_intermediates(p, intermediates) {
        out.push(finding(
            Severity::Warning,
            "too-many-intermediates",
            name,
            format!(
                "{intermediates} intermediates; the {} profile follows at most {}",
                p.name, p.max_intermediates
            ),
            "serve a shorter chain".into(),
        ));
    }
}
