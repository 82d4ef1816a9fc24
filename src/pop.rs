//! Stage 5: sender constraint — the token must be used by the client it was issued to.
//!
//! mTLS-bound tokens (RFC 8705 §3): `cnf["x5t#S256"]` must equal the SHA-256 of
//! the client certificate the host saw. DPoP-bound tokens (RFC 9449,
//! `cnf.jkt`) are checked by [`crate::dpop`]; this module only handles the
//! bearer and certificate cases, and refuses a DPoP scheme without a DPoP
//! binding.

use serde_json::Value;

use crate::b64;
use crate::credential::Scheme;
use crate::policy::Binding;
use crate::reason::ReasonCode;
use crate::request::Request;
use crate::token::{Claims, Issuer, TokenError};

/// Checks the token's binding; `Ok` carries a trace detail.
pub fn check(
    claims: &Claims,
    issuer: &Issuer,
    scheme: Scheme,
    request: &Request,
) -> Result<&'static str, TokenError> {
    let cnf = claims.cnf.as_ref();
    let jkt = cnf.and_then(|c| c.get("jkt"));
    let x5t = cnf.and_then(|c| c.get("x5t#S256"));
    if jkt.is_some() || issuer.binding == Binding::Dpop {
        return Err((ReasonCode::InternalError, "DPoP-bound tokens are checked by the DPoP stage".into()));
    }
    if scheme == Scheme::Dpop {
        return Err((
            ReasonCode::BindingMissing,
            "token sent with the `DPoP` scheme is not DPoP-bound".into(),
        ));
    }
    match (x5t, issuer.binding) {
        (None, Binding::Mtls) => Err((
            ReasonCode::BindingMissing,
            "issuer requires certificate-bound tokens but the token has no `cnf.x5t#S256`".into(),
        )),
        (None, _) => Ok("bearer token (no binding required)"),
        (Some(x5t), _) => {
            let expected = match x5t {
                Value::String(s) => b64::decode(s).ok().filter(|b| b.len() == 32),
                _ => None,
            }
            .ok_or((
                ReasonCode::TokenClaimInvalid,
                "`cnf.x5t#S256` must be a base64url SHA-256".to_owned(),
            ))?;
            let Some(presented) = request.client_cert_sha256 else {
                return Err((
                    ReasonCode::BindingCertificateMissing,
                    "token is bound to a client certificate but the connection presented none".into(),
                ));
            };
            if expected.as_slice() == presented.as_slice() {
                Ok("token bound to the presented client certificate")
            } else {
                Err((
                    ReasonCode::BindingCertificateMismatch,
                    "token is bound to a different client certificate".into(),
                ))
            }
        }
    }
}
