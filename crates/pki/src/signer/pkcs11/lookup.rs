//! Finding things in a token: the token a URI names, the login, the private
//! key object and its public key.

use std::path::Path;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use super::curve::Curve;
use super::{context, token_error, Error, Pin, Uri};

/// The token the URI names, in the library at `module`.
pub(super) fn find_token(module: &Path, uri: &Uri) -> Result<(Pkcs11, Slot, String), Error> {
    let ctx = context(module)?;
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| Error::Module {
            path: module.display().to_string(),
            why: format!("listing its tokens failed: {e}"),
        })?;
    let mut present = Vec::new();
    let mut found = None;
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end().to_string();
        let matches = uri.token.as_deref().is_none_or(|t| t == label)
            && uri
                .manufacturer
                .as_deref()
                .is_none_or(|m| m == info.manufacturer_id().trim_end())
            && uri
                .model
                .as_deref()
                .is_none_or(|m| m == info.model().trim_end())
            && uri
                .serial
                .as_deref()
                .is_none_or(|s| s == info.serial_number().trim_end())
            && uri.slot_id.is_none_or(|id| id == slot.id());
        if matches && found.is_none() {
            found = Some((slot, label.clone()));
        }
        present.push(format!("'{label}'"));
    }
    let Some((slot, label)) = found else {
        return Err(Error::TokenNotFound {
            uri: uri.without_module().to_string(),
            present: if present.is_empty() {
                "none".into()
            } else {
                present.join(", ")
            },
        });
    };
    Ok((ctx, slot, label))
}

/// A read-write session on the token, logged in as the user.
pub(super) fn login(ctx: &Pkcs11, slot: Slot, token: &str, pin: &Pin) -> Result<Session, Error> {
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| token_error(token, "opening a session", e))?;
    match session.login(UserType::User, Some(&pin.0)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
            Err(Error::WrongPin(token.into()))
        }
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(Error::PinLocked(token.into())),
        Err(e) => Err(token_error(token, "logging in", e)),
    }
}

/// The private key the URI names; more than one match is an error.
pub(super) fn find_key(
    session: &Session,
    uri: &Uri,
    token: &str,
) -> Result<Option<ObjectHandle>, Error> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session
        .find_objects(&template)
        .map_err(|e| token_error(token, "finding the key", e))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        more => Err(Error::ObjectNotFound(format!(
            "token '{token}' has {} private keys matching {}; add id= to the URI to pick one",
            more.len(),
            uri.describe()
        ))),
    }
}

/// The public point of the key pair: from its public key object (same label and id).
pub(super) fn public_point(
    session: &Session,
    label: &[u8],
    id: &[u8],
    curve: Curve,
    token: &str,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    if !id.is_empty() {
        template.push(Attribute::Id(id.to_vec()));
    }
    if !label.is_empty() {
        template.push(Attribute::Label(label.to_vec()));
    }
    let handles = session
        .find_objects(&template)
        .map_err(|e| token_error(token, "finding the public key", e))?;
    let missing = || {
        Error::ObjectNotFound(format!(
            "token '{token}' has {what} but no public key object with its label and id; devtls needs it to make the CA certificate"
        ))
    };
    let handle = *handles.first().ok_or_else(missing)?;
    let attrs = session
        .get_attributes(handle, &[AttributeType::EcPoint])
        .map_err(|e| token_error(token, "reading the public key", e))?;
    let raw = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(missing)?;
    let len = 1 + 2 * curve.size();
    // CKA_EC_POINT is a DER OCTET STRING around the point; some tokens give it bare.
    let point = match raw.len() {
        n if n == len => raw,
        n if n == len + 2 && raw[0] == 0x04 && raw[1] as usize == len => raw[2..].to_vec(),
        _ => {
            return Err(Error::Unsupported(format!(
                "token '{token}': the public key of {what} is not an uncompressed point ({} bytes)",
                raw.len()
            )))
        }
    };
    if point[0] != 0x04 {
        return Err(Error::Unsupported(format!(
            "token '{token}': the public key of {what} is not an uncompressed point"
        )));
    }
    Ok(point)
}
