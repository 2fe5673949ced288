//! The options that reach a CA key in a PKCS#11 token, and where its PIN
//! comes from: `--pin-file`, `DEVTLS_PKCS11_PIN`, or a prompt on a terminal.
//! There is deliberately no `--pin`: a PIN on the command line ends up in
//! shell history and in every process listing.

use std::io::IsTerminal;
use std::path::PathBuf;

use devtls_fleet::ca_key::{TokenAccess, PIN_ENV};
use devtls_pki::signer::pkcs11::Pin;

/// `--pin-file` and `--pkcs11-module`, on every fleet command that signs.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// When the CA key is in a PKCS#11 token: a file whose first line is the
    /// token's user PIN (else DEVTLS_PKCS11_PIN, else a prompt on a terminal).
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
    /// The token's PKCS#11 library [default: DEVTLS_PKCS11_MODULE, the one
    /// recorded at init, else SoftHSM2's].
    #[arg(long, value_name = "PATH")]
    pub pkcs11_module: Option<PathBuf>,
}

impl TokenArgs {
    /// The access the fleet library uses when it has to open the token.
    pub fn access(&self) -> TokenAccess {
        let pin_file = self.pin_file.clone();
        TokenAccess {
            module: self.pkcs11_module.clone(),
            pin: Box::new(move |token| pin(pin_file.as_ref(), token)),
        }
    }
}

fn pin(file: Option<&PathBuf>, token: &str) -> Result<Pin, String> {
    if let Some(file) = file {
        let bytes = crate::input::read(file).map_err(|e| format!("--pin-file {e}"))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            format!(
                "{}: the PIN file is not text; put the PIN on its first line",
                file.display()
            )
        })?;
        let first = text.lines().next().unwrap_or("").to_string();
        if first.is_empty() {
            return Err(format!(
                "{}: the first line is empty; put the PIN on it",
                file.display()
            ));
        }
        return Ok(Pin::new(first));
    }
    if let Ok(pin) = std::env::var(PIN_ENV) {
        return Ok(Pin::new(pin));
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{token}: the CA key is in a token and there is no terminal to ask for its PIN; \
             pass --pin-file FILE (the PIN on its first line) or set {PIN_ENV}"
        ));
    }
    rpassword::prompt_password(format!("User PIN for {token}: "))
        .map(Pin::new)
        .map_err(|e| format!("{token}: could not read the PIN: {e}"))
}
