//! Where an agent's state lives: the *unverified* routing key of a request.
//!
//! A host that keeps per-agent state in one place per agent (a Cloudflare
//! Durable Object named by the agent) must know, before deciding, which
//! agent a request speaks for. [`routing_key`] reads it the way the engine
//! will identify the agent, but **without verifying anything**: the token is
//! only split and decoded by the strict [`crate::jws::UntrustedJws`] parser,
//! its signature is not checked, and nothing here is used for a decision.
//!
//! The rule mirrors [`crate::token::Claims::agent`] and the engine's choice
//! of credential (`credentials` in the policy):
//!
//! - a token (`Authorization: Bearer|DPoP`): the current actor `act.sub`,
//!   else `client_id`, else `sub`, else `""` (the engine's agent for a token
//!   that names none);
//! - an HTTP message signature alone: the operator the `Signature-Agent`
//!   header names for the signature's label (the engine checks it is the
//!   key's operator);
//! - anything else (no credential, a malformed one, no `Signature-Agent`):
//!   no key.
//!
//! A forged token can therefore route a request to another agent's state,
//! where it is verified and refused; the engine counts rate limits and
//! breaker outcomes only for agents whose credential verified, so the
//! forgery costs the named agent nothing. A host must still check that the
//! agent that verified is the one it routed by (the gateway in `js/src/durable.js`
//! sends a mismatch on to the verified agent's state), because an
//! unverifiable routing key (a signature without `Signature-Agent`) would
//! otherwise split an agent's state.

use serde_json::Value;

use crate::credential;
use crate::json;
use crate::jws::UntrustedJws;
use crate::policy::CredentialMode;
use crate::request::Request;

/// The agent a request claims to be, unverified; `None` when it names none.
pub fn routing_key(request: &Request, mode: CredentialMode) -> Option<String> {
    let has_token = request.header_values("authorization").next().is_some();
    let has_signature = request.header_values("signature-input").next().is_some();
    let use_token = match mode {
        CredentialMode::Token | CredentialMode::Both => true,
        CredentialMode::Signature => false,
        CredentialMode::Either => has_token || !has_signature,
    };
    if use_token {
        token_agent(request)
    } else {
        signature_agent(request)
    }
}

/// The agent a token names, without verifying it: `act.sub`, else
/// `client_id`, else `sub`, else `""`. `None` when there is no single
/// well-formed credential whose payload is a JSON object.
fn token_agent(request: &Request) -> Option<String> {
    let credential = credential::extract(request).ok()?;
    let jws = UntrustedJws::parse(credential.token).ok()?;
    let claims = match json::parse_strict(jws.payload()).ok()? {
        Value::Object(map) => map,
        _ => return None,
    };
    let string = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let actor = claims.get("act").and_then(|act| string(act.get("sub")));
    Some(
        actor
            .or_else(|| string(claims.get("client_id")))
            .or_else(|| string(claims.get("sub")))
            .unwrap_or_default(),
    )
}

/// The operator `Signature-Agent` names for the first signature's label
/// (an sf-string `"https://…"`, or a dictionary member `label="https://…"`).
fn signature_agent(request: &Request) -> Option<String> {
    let mut inputs = request.header_values("signature-input");
    let input = inputs.next()?;
    let mut agents = request.header_values("signature-agent");
    let header = agents.next()?.trim();
    if inputs.next().is_some() || agents.next().is_some() {
        return None;
    }
    let unquote = |s: &str| {
        let s = s.trim().strip_prefix('"')?.strip_suffix('"')?;
        (!s.is_empty() && !s.contains('"')).then(|| s.to_owned())
    };
    if header.starts_with('"') {
        return unquote(header);
    }
    let label = input.split_once('=')?.0.trim();
    header.split(',').find_map(|member| {
        let (l, v) = member.split_once('=')?;
        (l.trim() == label).then(|| unquote(v)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;

    fn token(claims: Value) -> String {
        let h = b64::encode(br#"{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}"#);
        let p = b64::encode(claims.to_string().as_bytes());
        format!("{h}.{p}.{}", b64::encode(b"not-a-real-signature"))
    }

    fn request(headers: &[(&str, &str)]) -> Request<'static> {
        let mut b = Request::builder("GET", "/v1/x", 1_700_000_000);
        for (n, v) in headers {
            b = b.header(n, v);
        }
        b.build().unwrap()
    }

    fn key(headers: &[(&str, &str)], mode: CredentialMode) -> Option<String> {
        routing_key(&request(headers), mode)
    }

    #[test]
    fn token_agent_follows_the_claims_rule() {
        use serde_json::json;
        let bearer = |c: Value| format!("Bearer {}", token(c));
        let full = bearer(json!({"sub": "u", "client_id": "c", "act": {"sub": "a", "act": {"sub": "z"}}}));
        assert_eq!(key(&[("authorization", &full)], CredentialMode::Token).as_deref(), Some("a"));
        let client = bearer(json!({"sub": "u", "client_id": "c"}));
        assert_eq!(key(&[("authorization", &client)], CredentialMode::Token).as_deref(), Some("c"));
        let sub = format!("DPoP {}", token(json!({"sub": "u"})));
        assert_eq!(key(&[("authorization", &sub)], CredentialMode::Token).as_deref(), Some("u"));
        let none = bearer(json!({"scope": "x"}));
        assert_eq!(key(&[("authorization", &none)], CredentialMode::Token).as_deref(), Some(""));
        // A non-string `act.sub` or `client_id` is skipped (the engine refuses such a token anyway).
        let odd = bearer(json!({"sub": "u", "client_id": 7, "act": {"sub": ["x"]}}));
        assert_eq!(key(&[("authorization", &odd)], CredentialMode::Token).as_deref(), Some("u"));
    }

    #[test]
    fn the_same_key_as_the_verified_agent() {
        // Whatever routing_key reads from a token, Claims::agent() reads the same
        // once the token verifies: check it on the claims parser itself.
        use serde_json::json;
        for claims in [
            json!({"sub": "u", "client_id": "c", "act": {"sub": "a"}}),
            json!({"sub": "u", "client_id": "c"}),
            json!({"sub": "u"}),
            json!({}),
        ] {
            let auth = format!("Bearer {}", token(claims.clone()));
            let parsed = crate::token::type_claims(claims.as_object().unwrap().clone()).unwrap();
            assert_eq!(key(&[("authorization", &auth)], CredentialMode::Token), Some(parsed.agent()));
        }
    }

    #[test]
    fn no_key_without_one_wellformed_credential() {
        let t = format!("Bearer {}", token(serde_json::json!({"sub": "u"})));
        assert_eq!(key(&[], CredentialMode::Token), None);
        assert_eq!(key(&[("authorization", "Basic dXNlcg==")], CredentialMode::Token), None);
        assert_eq!(key(&[("authorization", "Bearer not.a.jws!")], CredentialMode::Token), None);
        assert_eq!(key(&[("authorization", &t), ("authorization", &t)], CredentialMode::Token), None);
        // A payload that is not an object, or has duplicate keys (strict parser).
        let h = b64::encode(br#"{"alg":"EdDSA"}"#);
        let arr = format!("Bearer {h}.{}.{}", b64::encode(b"[1]"), b64::encode(b"s"));
        assert_eq!(key(&[("authorization", &arr)], CredentialMode::Token), None);
        let dup = format!("Bearer {h}.{}.{}", b64::encode(br#"{"sub":"a","sub":"b"}"#), b64::encode(b"s"));
        assert_eq!(key(&[("authorization", &dup)], CredentialMode::Token), None);
        // A JWE is never parsed.
        assert_eq!(key(&[("authorization", "Bearer a.b.c.d.e")], CredentialMode::Token), None);
    }

    #[test]
    fn signature_agent_by_label_and_mode() {
        let input = r#"sig1=("@authority" "signature-agent");created=1;keyid="k";tag="web-bot-auth""#;
        let sf = [("signature-input", input), ("signature-agent", r#""https://bot.example""#)];
        assert_eq!(key(&sf, CredentialMode::Signature).as_deref(), Some("https://bot.example"));
        assert_eq!(key(&sf, CredentialMode::Either).as_deref(), Some("https://bot.example"));
        // `token` and `both` identify the agent by its token: none here.
        assert_eq!(key(&sf, CredentialMode::Token), None);
        assert_eq!(key(&sf, CredentialMode::Both), None);
        let dict = [
            ("signature-input", input),
            ("signature-agent", r#"sig0="https://other.example", sig1="https://bot.example""#),
        ];
        assert_eq!(key(&dict, CredentialMode::Signature).as_deref(), Some("https://bot.example"));
        // No Signature-Agent, or one naming nothing for the label: no key.
        assert_eq!(key(&[("signature-input", input)], CredentialMode::Signature), None);
        let other = [("signature-input", input), ("signature-agent", r#"sig2="https://x""#)];
        assert_eq!(key(&other, CredentialMode::Signature), None);
        let bare = [("signature-input", input), ("signature-agent", "https://x")];
        assert_eq!(key(&bare, CredentialMode::Signature), None);
        // `either` with a token present goes by the token, as the engine does.
        let t = format!("Bearer {}", token(serde_json::json!({"client_id": "c"})));
        let both = [sf[0], sf[1], ("authorization", t.as_str())];
        assert_eq!(key(&both, CredentialMode::Either).as_deref(), Some("c"));
        assert_eq!(key(&both, CredentialMode::Signature).as_deref(), Some("https://bot.example"));
    }
}
