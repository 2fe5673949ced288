//! Rules on a file's framing (what sniffing saw), before its contents.

use super::*;

/// Rules that need only the file's framing (sniff), not the X.509 contents.
pub(super) fn file_rules(
    input: &Input<'_>,
    all: &[Input<'_>],
    o: &Options<'_>,
    out: &mut Vec<Finding>,
) {
    let p = o.profile;
    let file = input.file;
    let items = &input.sniffed.items;

    // Only certificates and keys go to the device; CSRs and CRLs stay on the PC.
    let device_loads = |i: &&Item| i.kind == Kind::Certificate || i.kind.is_secret();
    if items
        .iter()
        .filter(device_loads)
        .any(|i| !crate::rules::loads_encoding(p, i.encoding))
    {
        // A PEM file next to its DER twin is the PC-side copy: nothing to say.
        let twinned = items
            .iter()
            .filter(device_loads)
            .all(|i| has_der_twin(i, input, all));
        if !twinned {
            let secret = items.iter().any(|i| i.kind.is_secret());
            out.push(finding(
                Severity::Error,
                "pem-not-der",
                file,
                format!(
                    "PEM text, but the {} profile loads DER only (the device fails with \
                     ValueError('{}'))",
                    p.name,
                    if secret {
                        verify_text::INVALID_KEY
                    } else {
                        verify_text::INVALID_CERT
                    }
                ),
                format!(
                    "convert it: devtls convert {file} --to der{}",
                    if items.iter().filter(|i| i.kind == Kind::Certificate).count() > 1 {
                        " (several certificates: devtls split first)"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }

    if input.sniffed.concatenated_der && p.single_anchor() {
        out.push(finding(
            Severity::Warning,
            "concatenated-der",
            file,
            format!(
                "{} DER certificates back to back; the device loads only the first and \
                 silently ignores the rest",
                items.len()
            ),
            format!(
                "give the device one certificate per file: devtls split {file}, then load \
                 the one it needs"
            ),
        ));
    }

    for item in items {
        match item.kind {
            Kind::EncryptedPrivateKey | Kind::LegacyEncryptedKey
                if matches!(keys::load_key_item(p, item), Err(KeyRefusal::Encrypted)) =>
            {
                out.push(finding(
                    Severity::Error,
                    "encrypted-key",
                    file,
                    format!(
                        "an {}; the device has no way to take a password and fails with \
                         ValueError('{}')",
                        item.kind.describe(),
                        verify_text::INVALID_KEY
                    ),
                    format!(
                        "decrypt it for the device: devtls convert {file} --to der -o {}.key.der \
                         (keep the file 0600)",
                        stem(file)
                    ),
                ));
            }
            Kind::PrivateKey(_) if item.trailing_bytes > 0 => {
                let refused = matches!(
                    keys::load_key_item(p, item),
                    Err(KeyRefusal::TrailingBytes { .. })
                );
                out.push(finding(
                    if refused { Severity::Error } else { Severity::Warning },
                    "key-trailing-bytes",
                    file,
                    format!(
                        "{} byte{} after the key structure; {}",
                        item.trailing_bytes,
                        if item.trailing_bytes == 1 { "" } else { "s" },
                        if refused {
                            format!("the {} profile's stack refuses the key (ValueError('{}'))", p.name, verify_text::INVALID_KEY)
                        } else {
                            format!("the {} device loads it, but it is not canonical DER and stricter tools refuse it", p.name)
                        }
                    ),
                    format!(
                        "rewrite it without the extra bytes: devtls convert {file} --to der -o {}.key.der",
                        stem(file)
                    ),
                ));
            }
            _ => {}
        }
    }
}

/// Whether the same structure is also given in DER form in another file.
pub(super) fn has_der_twin(item: &Item, this: &Input<'_>, all: &[Input<'_>]) -> bool {
    all.iter()
        .filter(|other| !std::ptr::eq(other.sniffed, this.sniffed))
        .flat_map(|other| other.sniffed.items.iter())
        .any(|other| other.encoding == Encoding::Der && other.der == item.der)
}
