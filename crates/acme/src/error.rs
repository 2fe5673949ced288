//! Errors callers branch on. Each prints as one line that says what the CA
//! (or the machine) said and what to do about it.

use instant_acme::Problem;

/// Everything that can go wrong while talking to a CA or writing the results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ACME directory could not be fetched (DNS, TCP, TLS or HTTP).
    #[error("cannot reach the ACME directory {url}: {detail}; check the URL (--server), the network, and --server-ca if the CA uses a private certificate")]
    Unreachable {
        /// The directory URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The CA refused because a rate limit was hit.
    #[error("the CA's rate limit was hit: {detail}; wait until the time it names (or use --server letsencrypt-staging while testing)")]
    RateLimited {
        /// The CA's words.
        detail: String,
    },
    /// The CA kept rejecting the anti-replay nonce after every retry.
    #[error("the CA rejected the request's nonce {attempts} times in a row ({detail}); this is the CA's problem, try again in a few minutes")]
    BadNonce {
        /// How many attempts were made.
        attempts: usize,
        /// The CA's words.
        detail: String,
    },
    /// A challenge was checked by the CA and failed.
    #[error("the CA could not validate {identifier} with {challenge}: {detail}; {hint}")]
    ChallengeFailed {
        /// The name or address.
        identifier: String,
        /// The challenge type (`http-01`, ...).
        challenge: String,
        /// The CA's detail.
        detail: String,
        /// What to check.
        hint: String,
    },
    /// The CA answered with another error document.
    #[error("the CA refused: {detail} ({kind}); {hint}")]
    Ca {
        /// The problem type (`urn:ietf:params:acme:error:...`).
        kind: String,
        /// The CA's detail.
        detail: String,
        /// What to do.
        hint: String,
    },
    /// The CA does not offer what was asked (profiles, ARI, a challenge type).
    #[error("{0}")]
    Unsupported(String),
    /// The CA answered something the protocol does not allow, or too slowly.
    #[error("{0}")]
    Protocol(String),
    /// The input cannot be used (flags, files, stored state).
    #[error("{0}")]
    Input(String),
    /// A challenge solver could not be set up (port in use, hook failed).
    #[error("{0}")]
    Solver(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Key, certificate or file handling in devtls-pki failed.
    #[error(transparent)]
    Pki(#[from] devtls_pki::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Whether the input (flags, files, stored state) was unusable: exit 2
    /// rather than 1.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::Input(_) | Error::Unsupported(_) | Error::Pki(devtls_pki::Error::Exists(_))
        )
    }

    /// The exit status for a command that failed with this error: 2 when
    /// devtls could not do its job (unusable input, the CA unreachable), 1
    /// when the CA or a challenge said no.
    pub fn exit_code(&self) -> u8 {
        if self.is_input() || matches!(self, Error::Unreachable { .. }) {
            2
        } else {
            1
        }
    }

    /// Maps an instant-acme error to one of ours.
    pub fn from_acme(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(p) => Self::from_problem(&p),
            instant_acme::Error::Timeout(_) => Error::Protocol(
                "the CA did not finish the order in time; run the command again later (the account and any validated names are kept)".into(),
            ),
            instant_acme::Error::Unsupported(what) => {
                Error::Unsupported(format!("the CA does not support {what}"))
            }
            other => Error::Protocol(format!("talking to the CA failed: {}", chain(&other))),
        }
    }

    /// Maps an ACME problem document to an error with advice.
    pub fn from_problem(p: &Problem) -> Self {
        let kind = p.r#type.clone().unwrap_or_else(|| "no type".into());
        let detail = problem_detail(p);
        let short = kind.rsplit(':').next().unwrap_or(&kind);
        match short {
            "rateLimited" => Error::RateLimited { detail },
            "badNonce" => Error::BadNonce {
                attempts: crate::order::NONCE_ATTEMPTS,
                detail,
            },
            _ => Error::Ca {
                hint: hint(short).into(),
                kind,
                detail,
            },
        }
    }
}

/// The CA's detail with any subproblems, on one line.
pub fn problem_detail(p: &Problem) -> String {
    let mut detail = p.detail.clone().unwrap_or_else(|| "no detail given".into());
    for sub in &p.subproblems {
        if let Some(d) = &sub.detail {
            detail.push_str("; ");
            detail.push_str(d);
        }
    }
    detail.replace(['\n', '\r'], " ")
}

fn hint(kind: &str) -> &'static str {
    match kind {
        "rejectedIdentifier" => "the CA will not issue for this name or address: check the spelling, and whether the CA issues for IP addresses (Let's Encrypt: only with --profile shortlived)",
        "externalAccountRequired" => "this CA needs --eab-kid and --eab-hmac from its web console",
        "unauthorized" => "the account may not act on this: check that --dir holds the account that ordered it",
        "invalidProfile" => "choose a profile the CA lists (classic, tlsserver, shortlived for Let's Encrypt)",
        "badCSR" | "badPublicKey" => "use --key p256 (the CA refused the key or request devtls made)",
        "alreadyRevoked" => "nothing to do: it is revoked already",
        "malformed" => "this is a bug in devtls or the CA; report it with the CA's detail",
        _ => "read the CA's detail above; run again with the same --dir to reuse the account",
    }
}

/// An error with its sources, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "status": 429,
        }))
        .unwrap()
    }

    #[test]
    fn ca_problems_become_errors_callers_branch_on_each_one_line_with_advice() {
        let e = Error::from_problem(&problem(
            "rateLimited",
            "too many certificates (5) already issued\nfor this exact set",
        ));
        assert!(matches!(e, Error::RateLimited { .. }));
        let line = e.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.contains("too many certificates") && line.contains("letsencrypt-staging"),
            "{line}"
        );
        assert!(matches!(
            Error::from_problem(&problem("badNonce", "x")),
            Error::BadNonce { .. }
        ));
        let e = Error::from_problem(&problem("rejectedIdentifier", "no IP"));
        assert!(e.to_string().contains("--profile shortlived"), "{e}");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(Error::Input("x".into()).exit_code(), 2);
        assert_eq!(
            Error::Unreachable {
                url: "u".into(),
                detail: "d".into()
            }
            .exit_code(),
            2
        );
    }
}
