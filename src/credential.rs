//! Stage 3: extract the credential from `Authorization`.
//!
//! Exactly one `Authorization` header, scheme `Bearer` or `DPoP` (RFC 6750
//! §2.1, RFC 9449 §7.1; scheme names are case-insensitive), a token of
//! base64url-and-dot characters, within the size cap. Tokens in query strings
//! or form bodies are not accepted.

use crate::limits::MAX_TOKEN_BYTES;
use crate::reason::ReasonCode;
use crate::request::Request;

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer …`
    Bearer,
    /// `Authorization: DPoP …`
    Dpop,
}

/// The presented credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential<'a> {
    /// The scheme.
    pub scheme: Scheme,
    /// The token text.
    pub token: &'a str,
}

/// The bytes a compact JWS may hold: base64url and `.` (a table: this runs
/// over the whole token on every request).
#[allow(clippy::indexing_slicing)] // `b < 256`, checked at compile time
static TOKEN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    table
};

/// Extracts the credential, or says why there is none.
pub fn extract<'r>(request: &'r Request<'_>) -> Result<Credential<'r>, (ReasonCode, String)> {
    let credential = extract_unchecked(request)?;
    check_characters(credential.token)?;
    Ok(credential)
}

/// [`extract`] without the check of the token's characters, for an engine
/// that first looks the token up among verified ones: a cached token passed
/// [`check_characters`] when it was verified (a hit is the same text), so
/// only a miss needs it. Scanning every byte of a ~0.6 KiB token was a
/// tenth of a cached decision.
pub fn extract_unchecked<'r>(request: &'r Request<'_>) -> Result<Credential<'r>, (ReasonCode, String)> {
    let mut values = request.header_values("authorization");
    let Some(value) = values.next() else {
        return Err((ReasonCode::CredentialMissing, "no `Authorization` header".into()));
    };
    if values.next().is_some() {
        return Err((ReasonCode::CredentialMalformed, "more than one `Authorization` header".into()));
    }
    let (scheme, token) = value.split_once(' ').ok_or((
        ReasonCode::CredentialMalformed,
        "`Authorization` header is not `<scheme> <token>`".to_owned(),
    ))?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err((
            ReasonCode::CredentialMalformed,
            format!(
                "unsupported `Authorization` scheme `{}`, expected `Bearer` or `DPoP`",
                crate::keys::clip(scheme)
            ),
        ));
    };
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err((ReasonCode::CredentialMalformed, "`Authorization` header has no token".into()));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err((
            ReasonCode::TokenMalformed,
            format!("token is {} bytes, more than the {MAX_TOKEN_BYTES}-byte limit", token.len()),
        ));
    }
    Ok(Credential { scheme, token })
}

/// A token holds only base64url characters and `.`.
pub fn check_characters(token: &str) -> Result<(), (ReasonCode, String)> {
    if token.bytes().all(|b| TOKEN_BYTE.get(usize::from(b)).copied().unwrap_or(false)) {
        Ok(())
    } else {
        Err((ReasonCode::TokenMalformed, "token has characters outside base64url and `.`".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<'static> {
        let mut b = Request::builder("GET", "/", 0);
        for (n, v) in headers {
            b = b.header(n, v);
        }
        b.build().unwrap()
    }

    #[test]
    fn one_bearer_or_dpop_header() {
        assert_eq!(extract(&req(&[("authorization", "Bearer a.b.c")])).unwrap().token, "a.b.c");
        assert_eq!(extract(&req(&[("Authorization", "bearer a.b.c")])).unwrap().scheme, Scheme::Bearer);
        assert_eq!(extract(&req(&[("Authorization", "DPoP a.b.c")])).unwrap().scheme, Scheme::Dpop);
        assert_eq!(extract(&req(&[])).unwrap_err().0, ReasonCode::CredentialMissing);
        let two = req(&[("authorization", "Bearer a.b.c"), ("Authorization", "Bearer d.e.f")]);
        assert!(extract(&two).unwrap_err().1.contains("more than one"));
        assert!(extract(&req(&[("authorization", "Basic dXNlcjpwYXNz")])).unwrap_err().1.contains("`Basic`"));
        assert_eq!(
            extract(&req(&[("authorization", "Bearer ")])).unwrap_err().0,
            ReasonCode::CredentialMalformed
        );
        assert_eq!(
            extract(&req(&[("authorization", "Bearer a+b.c")])).unwrap_err().0,
            ReasonCode::TokenMalformed
        );
    }
}
