//! HTTP Message Signatures (RFC 9421) as a machine credential: Web Bot Auth.
//!
//! Agents that browse or call APIs as "signed web agents" sign each request
//! with an Ed25519 key whose public half their operator publishes in a key
//! directory. A request carries
//!
//! ```text
//! Signature-Agent: "https://crawler.example"
//! Signature-Input: sig1=("@authority" "signature-agent");created=1767225600;expires=1767225660;keyid="<JWK thumbprint>";alg="ed25519";nonce="…";tag="web-bot-auth"
//! Signature: sig1=:<base64 signature>:
//! ```
//!
//! and agentguard checks: the `web-bot-auth` tag; `keyid` is the RFC 7638
//! thumbprint of a key in a trusted directory (inline in the policy, or fetched
//! by the host from the operator's
//! `/.well-known/http-message-signatures-directory`); the covered components
//! include `@authority` (and `signature-agent` when that header is present,
//! which must then name the key's operator); `created` and `expires` are
//! present and current; the nonce (if required) is single-use; and the
//! Ed25519 signature verifies over the RFC 9421 signature base.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Duration;
use crate::keys::{self, clip, Alg, KeySet};
use crate::reason::ReasonCode;
use crate::request::Request;
use crate::token::TokenError;

/// Whether fetched key directories must carry a valid response signature
/// (`signature_agents.directory_signatures`, [`crate::directory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectorySignatures {
    /// Only keys a valid `tag="http-message-signatures-directory"` signature
    /// covers are trusted (the default).
    #[default]
    Required,
    /// The response signature is not checked: trust comes from the URL alone
    /// (for operators that do not sign their directory yet).
    Unchecked,
}

/// The policy's `signature_agents` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureAgentsPolicy {
    /// Trusted operators and their key directories.
    pub directories: Vec<DirectoryPolicy>,
    /// Required `tag`. Default `web-bot-auth`.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Longest `expires − created` and oldest `created` accepted. Default `5m`.
    #[serde(default = "default_max_age")]
    pub max_age: Duration,
    /// Clock skew. Default `30s`.
    #[serde(default = "default_skew")]
    pub clock_skew: Duration,
    /// Require a nonce on every signature (single-use). Default `true`.
    #[serde(default = "yes")]
    pub require_nonce: bool,
    /// Whether a fetched directory must be signed. Default `required`.
    #[serde(default)]
    pub directory_signatures: DirectorySignatures,
}

fn default_tag() -> String {
    "web-bot-auth".into()
}
fn default_max_age() -> Duration {
    Duration::from_secs(300)
}
fn default_skew() -> Duration {
    Duration::from_secs(30)
}
fn yes() -> bool {
    true
}

/// One operator's key directory.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryPolicy {
    /// The operator, as its `Signature-Agent` names it (`https://crawler.example`).
    pub operator: String,
    /// Inline keys (`{"keys": [...]}`, Ed25519).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Value>,
    /// Where the host fetches the directory (`…/.well-known/http-message-signatures-directory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_uri: Option<String>,
    /// Scopes this operator's agents get (what routes they may call).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A verified signature: who signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The operator whose key signed.
    pub operator: String,
    /// The key's thumbprint.
    pub keyid: String,
    /// Scopes granted to the operator.
    pub scopes: Vec<String>,
    /// Replay key of the nonce (if any) and when it may be forgotten.
    pub nonce: Option<([u8; 32], i64)>,
    /// SHA-256 of the signature, as a correlation id.
    pub hash: [u8; 32],
}

/// One covered component: its name and whether it carries the `req` flag
/// (RFC 9421 §2.4: taken from the request a response answers). No other
/// component parameter is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Component {
    pub(crate) name: String,
    pub(crate) req: bool,
}

impl Component {
    /// The component identifier as the signature base writes it.
    pub(crate) fn identifier(&self) -> String {
        if self.req {
            format!("\"{}\";req", self.name)
        } else {
            format!("\"{}\"", self.name)
        }
    }
}

/// One parsed `Signature-Input` member.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignatureInput {
    pub(crate) label: String,
    pub(crate) components: Vec<Component>,
    /// The member's value exactly as sent (`("@authority" …);created=…`).
    pub(crate) raw_params: String,
    pub(crate) created: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) keyid: Option<String>,
    pub(crate) alg: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) tag: Option<String>,
}

/// Checks a request's Web Bot Auth signature against `directories`
/// (`(operator, keys, scopes)`).
pub fn verify(
    policy: &SignatureAgentsPolicy,
    directories: &[(String, KeySet, Vec<String>)],
    request: &Request,
) -> Result<VerifiedSignature, TokenError> {
    let invalid = |m: String| (ReasonCode::SignatureInvalid, m);
    fn one<'r>(request: &'r Request, name: &'static str) -> Result<Option<&'r str>, TokenError> {
        let mut v = request.header_values(name);
        let first = v.next();
        if v.next().is_some() {
            return Err((ReasonCode::SignatureInvalid, format!("more than one `{name}` header")));
        }
        Ok(first)
    }
    let input_header = one(request, "signature-input")?
        .ok_or((ReasonCode::SignatureMissing, "no `Signature-Input` header".to_owned()))?;
    let sig_header = one(request, "signature")?
        .ok_or((ReasonCode::SignatureMissing, "no `Signature` header".to_owned()))?;
    let inputs =
        parse_signature_inputs(input_header).map_err(|e| invalid(format!("`Signature-Input`: {e}")))?;
    let input = inputs
        .into_iter()
        .find(|i| i.tag.as_deref() == Some(policy.tag.as_str()))
        .ok_or_else(|| invalid(format!("no signature with `tag=\"{}\"`", policy.tag)))?;
    let signature =
        signature_for(sig_header, &input.label).map_err(|e| invalid(format!("`Signature`: {e}")))?;
    if let Some(alg) = &input.alg {
        if alg != "ed25519" {
            return Err(invalid(format!(
                "signature algorithm `{}` is not accepted, expected `ed25519`",
                clip(alg)
            )));
        }
    }
    // Time window.
    let now = request.now();
    let skew = policy.clock_skew.as_secs_i64();
    let (created, expires) = time_window(&input, now, skew)?;
    let max_age = policy.max_age.as_secs_i64();
    if expires.saturating_sub(created) > max_age || now.saturating_sub(created) > max_age.saturating_add(skew)
    {
        return Err((
            ReasonCode::SignatureExpired,
            format!("signature is valid for longer than {}", policy.max_age),
        ));
    }
    // Components: @authority always; signature-agent whenever the header is sent.
    let agent_header = one(request, "signature-agent")?;
    if let Some(c) = input.components.iter().find(|c| c.req) {
        return Err(invalid(format!(
            "component `{}` has the `req` flag, which only a response signature may use",
            c.identifier()
        )));
    }
    let covers = |name: &str| input.components.iter().any(|c| c.name == name);
    if !covers("@authority") {
        return Err((ReasonCode::SignatureComponentMissing, "signature does not cover `@authority`".into()));
    }
    if agent_header.is_some() && !covers("signature-agent") {
        return Err((
            ReasonCode::SignatureComponentMissing,
            "signature does not cover `signature-agent`".into(),
        ));
    }
    // Key.
    let keyid = input.keyid.clone().ok_or_else(|| invalid("signature has no `keyid`".into()))?;
    let (operator, key, scopes) = directories
        .iter()
        .find_map(|(op, set, scopes)| set.by_thumbprint(&keyid).map(|k| (op, k, scopes)))
        .ok_or_else(|| {
            (ReasonCode::SignatureKeyUnknown, format!("no trusted directory has key `{}`", clip(&keyid)))
        })?;
    if let Some(agent) = agent_header {
        let named = signature_agent_value(agent, &input.label);
        if named.as_deref() != Some(operator.as_str()) {
            return Err((
                ReasonCode::SignatureKeyUnknown,
                format!(
                    "`Signature-Agent` names `{}`, but key `{}` belongs to `{operator}`",
                    clip(named.as_deref().unwrap_or("")),
                    clip(&keyid)
                ),
            ));
        }
    }
    let base = signature_base(&input, |c| request_component(request, &c.name))
        .map_err(|e| (ReasonCode::SignatureComponentMissing, e))?;
    keys::verify_signature(Alg::EdDSA, &key.key, base.as_bytes(), &signature)
        .map_err(|e| invalid(format!("signature: {e}")))?;
    let nonce = match &input.nonce {
        Some(n) => {
            use sha2::{Digest, Sha256};
            let key: [u8; 32] = Sha256::new()
                .chain_update(keyid.as_bytes())
                .chain_update([0])
                .chain_update(n.as_bytes())
                .finalize()
                .into();
            Some((key, expires.saturating_add(skew)))
        }
        None if policy.require_nonce => return Err(invalid("signature has no `nonce`".into())),
        None => None,
    };
    use sha2::{Digest, Sha256};
    Ok(VerifiedSignature {
        operator: operator.clone(),
        keyid,
        scopes: scopes.clone(),
        nonce,
        hash: Sha256::digest(&signature).into(),
    })
}

/// `created` and `expires` of a signature, both required, checked against
/// `now` with `skew` either way: `signature_expired` when outside.
pub(crate) fn time_window(input: &SignatureInput, now: i64, skew: i64) -> Result<(i64, i64), TokenError> {
    let invalid = |m: &str| (ReasonCode::SignatureInvalid, m.to_owned());
    let created = input.created.ok_or_else(|| invalid("signature has no `created`"))?;
    let expires = input.expires.ok_or_else(|| invalid("signature has no `expires`"))?;
    // `created`/`expires` are attacker-chosen integers: saturating arithmetic only.
    if created > now.saturating_add(skew) {
        let ahead = created.saturating_sub(now);
        return Err((ReasonCode::SignatureExpired, format!("signature was created {ahead} s in the future")));
    }
    if now >= expires.saturating_add(skew) {
        let ago = now.saturating_sub(expires);
        return Err((ReasonCode::SignatureExpired, format!("signature expired {ago} s ago")));
    }
    Ok((created, expires))
}

/// A request component's value (RFC 9421 §2.2 derived components, or a header field).
fn request_component(request: &Request, name: &str) -> Result<String, String> {
    Ok(match name {
        "@authority" => request.host.to_string(),
        "@method" => request.method.to_string(),
        "@path" => request.path.to_string(),
        "@query" => format!("?{}", request.query.as_deref().unwrap_or("")),
        "@scheme" => request.scheme.to_string(),
        "@target-uri" => format!(
            "{}://{}{}{}",
            request.scheme,
            request.host,
            request.path,
            request.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
        ),
        name if name.starts_with('@') => return Err(format!("component `{name}` is not supported")),
        name => {
            let values: Vec<&str> = request.header_values(name).map(str::trim).collect();
            if values.is_empty() {
                return Err(format!("signed header `{name}` is not in the request"));
            }
            values.join(", ")
        }
    })
}

/// The RFC 9421 §2.5 signature base, each component's value from `value`.
pub(crate) fn signature_base(
    input: &SignatureInput,
    value: impl Fn(&Component) -> Result<String, String>,
) -> Result<String, String> {
    let mut base = String::new();
    for c in &input.components {
        let value = value(c)?;
        if value.contains('\n') {
            return Err(format!("component `{}` contains a newline", c.name));
        }
        base.push_str(&format!("{}: {value}\n", c.identifier()));
    }
    base.push_str(&format!("\"@signature-params\": {}", input.raw_params));
    Ok(base)
}

/// Parses `Signature-Input` (an RFC 8941 dictionary of inner lists with parameters).
pub(crate) fn parse_signature_inputs(header: &str) -> Result<Vec<SignatureInput>, String> {
    let mut out = Vec::new();
    for member in split_top_level(header, ',') {
        let member = member.trim();
        let (label, value) = member.split_once('=').ok_or("expected `label=(…)`")?;
        let label = label.trim();
        if label.is_empty()
            || !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b))
        {
            return Err(format!("bad label `{}`", clip(label)));
        }
        let value = value.trim();
        let inner = value.strip_prefix('(').ok_or("expected an inner list `(…)`")?;
        let close = inner.find(')').ok_or("unterminated inner list")?;
        let (items, params) = (inner.get(..close).unwrap_or(""), inner.get(close + 1..).unwrap_or(""));
        let mut components = Vec::new();
        for item in items.split(' ').filter(|s| !s.is_empty()) {
            // `;req` is the one component parameter understood (response signatures).
            let (item, req) = match item.strip_suffix(";req") {
                Some(bare) => (bare, true),
                None => (item, false),
            };
            let name = item.strip_prefix('"').and_then(|s| s.strip_suffix('"')).ok_or_else(|| {
                format!(
                    "component `{}` is not a quoted string (component parameters are not supported)",
                    clip(item)
                )
            })?;
            if name.is_empty() || name.contains(['"', '\\']) {
                return Err(format!("bad component `{}`", clip(name)));
            }
            let component = Component { name: name.to_owned(), req };
            if components.contains(&component) {
                return Err(format!("component `{}` appears twice", component.identifier()));
            }
            components.push(component);
        }
        let mut si = SignatureInput {
            label: label.to_owned(),
            components,
            raw_params: value.to_owned(),
            created: None,
            expires: None,
            keyid: None,
            alg: None,
            nonce: None,
            tag: None,
        };
        for param in params.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) =
                param.split_once('=').ok_or_else(|| format!("parameter `{}` has no value", clip(param)))?;
            let string = || -> Result<String, String> {
                let s = v
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .ok_or_else(|| format!("`{k}` must be a string"))?;
                if s.contains(['"', '\\']) {
                    return Err(format!("`{k}` has escapes, which are not supported"));
                }
                Ok(s.to_owned())
            };
            let int = || v.parse::<i64>().map_err(|_| format!("`{k}` must be an integer"));
            let dup = |slot: bool| if slot { Err(format!("parameter `{k}` appears twice")) } else { Ok(()) };
            match k {
                "created" => {
                    dup(si.created.is_some())?;
                    si.created = Some(int()?);
                }
                "expires" => {
                    dup(si.expires.is_some())?;
                    si.expires = Some(int()?);
                }
                "keyid" => {
                    dup(si.keyid.is_some())?;
                    si.keyid = Some(string()?);
                }
                "alg" => {
                    dup(si.alg.is_some())?;
                    si.alg = Some(string()?);
                }
                "nonce" => {
                    dup(si.nonce.is_some())?;
                    si.nonce = Some(string()?);
                }
                "tag" => {
                    dup(si.tag.is_some())?;
                    si.tag = Some(string()?);
                }
                other => return Err(format!("unknown parameter `{}`", clip(other))),
            }
        }
        out.push(si);
    }
    if out.is_empty() {
        return Err("no signature".into());
    }
    Ok(out)
}

/// The byte sequence for `label` in a `Signature` dictionary (`label=:base64:`).
pub(crate) fn signature_for(header: &str, label: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    for member in split_top_level(header, ',') {
        if let Some((l, v)) = member.trim().split_once('=') {
            if l.trim() == label {
                let b64 = v
                    .trim()
                    .strip_prefix(':')
                    .and_then(|s| s.strip_suffix(':'))
                    .ok_or("expected `:base64:`")?;
                return base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| "invalid base64".to_owned());
            }
        }
    }
    Err(format!("no signature labelled `{}`", clip(label)))
}

/// The operator a `Signature-Agent` header names: an sf-string (`"https://…"`)
/// or a dictionary member for the signature's label (`sig1="https://…"`).
fn signature_agent_value(header: &str, label: &str) -> Option<String> {
    let unquote = |s: &str| s.trim().strip_prefix('"').and_then(|s| s.strip_suffix('"')).map(str::to_owned);
    let h = header.trim();
    if h.starts_with('"') {
        return unquote(h);
    }
    split_top_level(h, ',').into_iter().find_map(|m| {
        let (l, v) = m.trim().split_once('=')?;
        (l.trim() == label).then(|| unquote(v)).flatten()
    })
}

/// Splits on `sep` outside double quotes and parentheses.
pub(crate) fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut depth, mut quoted, mut start) = (Vec::new(), 0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && !quoted && depth == 0 => {
                out.push(s.get(start..i).unwrap_or(""));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signature_input() {
        let h = r#"sig1=("@authority" "signature-agent");created=1735689600;expires=1735693200;keyid="abc";alg="ed25519";nonce="n1";tag="web-bot-auth""#;
        let i = &parse_signature_inputs(h).unwrap()[0];
        assert_eq!(i.label, "sig1");
        let names: Vec<&str> = i.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["@authority", "signature-agent"]);
        assert!(i.components.iter().all(|c| !c.req));
        let r =
            &parse_signature_inputs(r#"binding0=("@authority";req "content-digest");created=1"#).unwrap()[0];
        assert_eq!(r.components[0], Component { name: "@authority".into(), req: true });
        assert_eq!(r.components[0].identifier(), "\"@authority\";req");
        assert!(!r.components[1].req);
        assert_eq!((i.created, i.expires), (Some(1_735_689_600), Some(1_735_693_200)));
        assert_eq!(i.raw_params, h.split_once('=').unwrap().1);
        assert!(parse_signature_inputs(r#"sig1=("@authority");created=1;created=2"#)
            .unwrap_err()
            .contains("twice"));
        assert!(parse_signature_inputs(r#"sig1=("@authority";sf);created=1"#).is_err());
        assert!(parse_signature_inputs(r#"sig1=("@authority");foo=1"#)
            .unwrap_err()
            .contains("unknown parameter"));
    }

    #[test]
    fn signature_agent_forms() {
        assert_eq!(
            signature_agent_value(r#""https://a.example""#, "sig1").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            signature_agent_value(r#"sig2="https://b", sig1="https://a""#, "sig1").as_deref(),
            Some("https://a")
        );
        assert_eq!(signature_agent_value("https://a", "sig1"), None);
    }
}
