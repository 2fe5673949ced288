//! PKCS#11 URIs (RFC 7512) naming a token and a key object in it, such as
//! `pkcs11:token=fleet;object=fleet-ca`.
//!
//! Only what selects a private key is accepted: the token's `token`,
//! `manufacturer`, `model` and `serial`, the slot's `slot-id`, the object's
//! `object` (its label), `id` and `type` (which must be `private`), and the
//! query's `module-path`. A PIN in the URI (`pin-value`, `pin-source`) is
//! refused: it would end up in shell history and in the fleet's files.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed `pkcs11:` URI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uri {
    /// The token label (`token=`).
    pub token: Option<String>,
    /// The token manufacturer (`manufacturer=`).
    pub manufacturer: Option<String>,
    /// The token model (`model=`).
    pub model: Option<String>,
    /// The token serial number (`serial=`).
    pub serial: Option<String>,
    /// The slot number (`slot-id=`).
    pub slot_id: Option<u64>,
    /// The key object's label (`object=`).
    pub object: Option<String>,
    /// The key object's CKA_ID (`id=`, percent-encoded bytes).
    pub id: Option<Vec<u8>>,
    /// The PKCS#11 library (`?module-path=`).
    pub module_path: Option<PathBuf>,
}

/// Why a URI was refused: the text names the attribute and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{uri}' is not a usable PKCS#11 key URI: {why}")]
pub struct UriError {
    /// The URI as given.
    pub uri: String,
    /// What is wrong with it.
    pub why: String,
}

const EXAMPLE: &str = "write e.g. pkcs11:token=fleet;object=fleet-ca";

impl FromStr for Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        let fail = |why: String| UriError {
            uri: redact(s).escape_default().to_string(),
            why,
        };
        let rest = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| fail(format!("it does not start with 'pkcs11:'; {EXAMPLE}")))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| fail(format!("'{attr}' has no '='; {EXAMPLE}")))?;
            let bytes = decode(value).map_err(|why| fail(format!("{name}: {why}")))?;
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| fail(format!("{name}: the value is not UTF-8 text")))
            };
            let slot = match name {
                "token" => &mut uri.token,
                "manufacturer" => &mut uri.manufacturer,
                "model" => &mut uri.model,
                "serial" => &mut uri.serial,
                "object" => &mut uri.object,
                "id" => {
                    set_once(&mut uri.id, bytes.clone(), name).map_err(fail)?;
                    continue;
                }
                "slot-id" => {
                    let n = text()?
                        .parse()
                        .map_err(|_| fail(format!("slot-id '{value}' is not a decimal number")))?;
                    set_once(&mut uri.slot_id, n, name).map_err(fail)?;
                    continue;
                }
                "type" => {
                    if text()? != "private" {
                        return Err(fail(format!(
                            "type={value}: the CA key is a private key; drop type= or write type=private"
                        )));
                    }
                    continue;
                }
                // Attributes of the library or the slot do not pick a key but are harmless.
                "library-manufacturer"
                | "library-description"
                | "library-version"
                | "slot-manufacturer"
                | "slot-description" => continue,
                "pin-value" | "pin-source" => {
                    return Err(fail(format!(
                        "{name}= puts the PIN where it is logged and stored; remove it and give \
                         the PIN with --pin-file FILE, DEVTLS_PKCS11_PIN or at the prompt"
                    )))
                }
                other => {
                    return Err(fail(format!(
                        "unknown attribute '{other}'; use token=, object=, id=, serial=, \
                         manufacturer=, model= or slot-id="
                    )))
                }
            };
            set_once(slot, text()?, name).map_err(fail)?;
        }
        for attr in query.into_iter().flat_map(|q| q.split('&')) {
            if attr.is_empty() {
                continue;
            }
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "module-path" => {
                    let bytes = decode(value).map_err(|why| fail(format!("{name}: {why}")))?;
                    let path = String::from_utf8(bytes)
                        .map_err(|_| fail("module-path is not UTF-8 text".into()))?;
                    if path.is_empty() {
                        return Err(fail("module-path is empty".into()));
                    }
                    set_once(&mut uri.module_path, PathBuf::from(path), name).map_err(fail)?;
                }
                "module-name" => {}
                "pin-value" | "pin-source" => {
                    return Err(fail(format!(
                        "{name}= puts the PIN where it is logged and stored; remove it and give \
                         the PIN with --pin-file FILE, DEVTLS_PKCS11_PIN or at the prompt"
                    )))
                }
                other => {
                    return Err(fail(format!(
                        "unknown query attribute '{other}'; only module-path= is used"
                    )))
                }
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(fail(format!(
                "it names no key: add object=LABEL (or id=); {EXAMPLE}"
            )));
        }
        if uri.token.is_none()
            && uri.serial.is_none()
            && uri.slot_id.is_none()
            && uri.model.is_none()
            && uri.manufacturer.is_none()
        {
            return Err(fail(format!(
                "it names no token: add token=LABEL (or serial=); {EXAMPLE}"
            )));
        }
        Ok(uri)
    }
}

/// The URI with the value of any PIN attribute blanked, for messages.
fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = ["pin-value=", "pin-source="]
        .iter()
        .filter_map(|a| rest.find(a).map(|i| i + a.len()))
        .min()
    {
        out.push_str(&rest[..at]);
        out.push_str("...");
        rest = &rest[at..];
        let end = rest.find([';', '&', '?']).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name}= is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// Percent-decodes a value (RFC 3986).
fn decode(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("'%' at {} is not followed by two hex digits", i))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-encodes a value: everything but RFC 7512's unreserved and
/// path-safe characters (in the query, also '/', '?' and '|').
fn encode(bytes: &[u8], query: bool, out: &mut String) {
    for &b in bytes {
        let safe = b.is_ascii_alphanumeric()
            || b"-._~:[]@!$'()*+,".contains(&b)
            || (query && b"/?|".contains(&b));
        if safe {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl Uri {
    /// The URI without its module path: what identifies the key wherever
    /// the library is installed.
    pub fn without_module(&self) -> Uri {
        Uri {
            module_path: None,
            ..self.clone()
        }
    }

    /// A short name for messages: the object label (or id) and the token.
    pub fn describe(&self) -> String {
        let object = match (&self.object, &self.id) {
            (Some(label), _) => format!("object '{label}'"),
            (None, Some(id)) => format!("object id {}", hex::encode(id)),
            (None, None) => "the object".into(),
        };
        match &self.token {
            Some(token) => format!("{object} in token '{token}'"),
            None => object,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::from("pkcs11:");
        let mut attrs: Vec<(&str, Vec<u8>)> = Vec::new();
        let text = |v: &Option<String>| v.as_ref().map(|s| s.as_bytes().to_vec());
        for (name, value) in [
            ("token", text(&self.token)),
            ("manufacturer", text(&self.manufacturer)),
            ("model", text(&self.model)),
            ("serial", text(&self.serial)),
            ("slot-id", self.slot_id.map(|n| n.to_string().into_bytes())),
            ("object", text(&self.object)),
            ("id", self.id.clone()),
        ] {
            if let Some(v) = value {
                attrs.push((name, v));
            }
        }
        for (i, (name, value)) in attrs.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(name);
            out.push('=');
            encode(value, false, &mut out);
        }
        if let Some(path) = &self.module_path {
            out.push_str("?module-path=");
            encode(path.to_string_lossy().as_bytes(), true, &mut out);
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_object_id_and_module_and_round_trips() {
        let uri: Uri = "pkcs11:token=My%20Fleet;object=ca;id=%01%ff?module-path=/usr/lib/softhsm/libsofthsm2.so"
            .parse()
            .unwrap();
        assert_eq!(uri.token.as_deref(), Some("My Fleet"));
        assert_eq!(uri.object.as_deref(), Some("ca"));
        assert_eq!(uri.id.as_deref(), Some(&[1u8, 0xff][..]));
        assert_eq!(
            uri.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        let again: Uri = uri.to_string().parse().unwrap();
        assert_eq!(again, uri);
        assert_eq!(
            uri.without_module().to_string(),
            "pkcs11:token=My%20Fleet;object=ca;id=%01%FF"
        );
    }

    #[test]
    fn refuses_pins_unknown_attributes_and_uris_naming_no_key_or_token() {
        for (uri, says) in [
            ("pkcs11:token=t;object=k;pin-value=1234", "pin-value"),
            ("pkcs11:token=t;object=k?pin-value=1234", "pin-value"),
            ("pkcs11:token=t;object=k?pin-source=file:/p", "pin-source"),
            ("pkcs11:token=t;object=k;colour=red", "unknown attribute"),
            ("pkcs11:token=t", "names no key"),
            ("pkcs11:object=k", "names no token"),
            ("pkcs11:token=t;object=k;type=cert", "type=cert"),
            ("pkcs11:token=t;object=k;object=j", "twice"),
            ("pkcs11:token=t;object=%zz", "hex digits"),
            ("token=t;object=k", "pkcs11:"),
        ] {
            let err = uri.parse::<Uri>().unwrap_err().to_string();
            assert!(err.contains(says), "{uri}: {err}");
            assert!(!err.contains("1234"), "the PIN is never repeated: {err}");
        }
    }
}
