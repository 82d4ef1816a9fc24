//! The response signature of a Web Bot Auth key directory.
//!
//! An operator serves its keys at `/.well-known/http-message-signatures-directory`
//! (draft-meunier-webbotauth-httpsig-directory, "Binding keys to the
//! directory authority"). The response carries one RFC 9421 signature per
//! key, each by that key:
//!
//! ```text
//! Signature-Input: binding0=("@authority";req);created=1767225600;keyid="<JWK thumbprint>";alg="ed25519";expires=1767229200;tag="http-message-signatures-directory"
//! Signature: binding0=:<base64 signature>:
//! ```
//!
//! The draft says clients SHOULD validate these signatures and SHOULD ignore
//! keys that have no valid one. agentguard does, unless the policy sets
//! `signature_agents.directory_signatures: "unchecked"`:
//!
//! - every member tagged `http-message-signatures-directory` must verify, or
//!   the whole directory is refused (the engine keeps the previous keys): a
//!   signature that does not verify means the response was altered or the
//!   operator's signing is broken, and neither should change trusted keys;
//! - each one's `keyid` must be the RFC 7638 thumbprint of a key in this
//!   directory, its algorithm Ed25519 (`alg`, when present, `ed25519`);
//! - it must cover `"@authority";req`, whose value is the authority of the
//!   policy's `directory_uri` (not one the host reports): that binds each key
//!   to the operator's origin, so a directory cannot claim another
//!   operator's key (its signature names that operator's authority);
//! - `content-digest` may be covered too (the draft recommends it); then the
//!   response's `Content-Digest` must match the body (`sha-256`/`sha-512`),
//!   which binds the key set itself; no other component is accepted;
//! - `created` and `expires` are required and must hold at `now`, give or
//!   take the policy's `clock_skew` (no `max_age`: directories are cached for
//!   hours, unlike request signatures);
//! - keys no valid signature covers are dropped (reported as key problems);
//!   a directory with no signed key is refused.
//!
//! Without `content-digest` the signatures cover the authority, not the key
//! set: they prove each listed key's holder signed for this origin, which
//! stops key claims across operators, while HTTPS protects the body.

use sha2::{Digest, Sha256, Sha512};

use crate::httpsig::{parse_signature_inputs, signature_base, signature_for, split_top_level, time_window};
use crate::keys::{self, clip, Alg, KeySet};

/// The `tag` of a directory response signature.
pub const TAG: &str = "http-message-signatures-directory";

/// A fetched directory response: the body and the headers its signature needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectoryResponse<'a> {
    /// The body as received (a JWK set).
    pub text: &'a str,
    /// The `Signature-Input` header (several fields joined with `, `).
    pub signature_input: Option<&'a str>,
    /// The `Signature` header.
    pub signature: Option<&'a str>,
    /// The `Content-Digest` header, needed when a signature covers it.
    pub content_digest: Option<&'a str>,
}

/// The authority (`host[:port]`, lowercase, default port omitted) of an
/// `http(s)` URL, as RFC 9421 `@authority` has it.
pub fn authority_of(uri: &str) -> Result<String, String> {
    let (rest, default_port) = if let Some(r) = uri.strip_prefix("https://") {
        (r, ":443")
    } else if let Some(r) = uri.strip_prefix("http://") {
        (r, ":80")
    } else {
        return Err(format!("`{}` is not an http(s) URL", clip(uri)));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or("").to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{}` has no plain `host[:port]`", clip(uri)));
    }
    Ok(authority.strip_suffix(default_port).map(str::to_owned).unwrap_or(authority))
}

/// Checks a directory response's signatures against the keys it lists
/// (`set`, parsed from `response.text`), for a directory fetched from
/// `authority`, at `now` (Unix seconds) with `skew` seconds of clock skew.
/// Returns the thumbprints of the keys a valid signature covers.
pub fn verify(
    set: &KeySet,
    response: &DirectoryResponse<'_>,
    authority: &str,
    now: i64,
    skew: i64,
) -> Result<Vec<String>, String> {
    let input_header = response
        .signature_input
        .filter(|h| !h.trim().is_empty())
        .ok_or("the directory response is not signed (no `Signature-Input` header)")?;
    let sig_header = response
        .signature
        .filter(|h| !h.trim().is_empty())
        .ok_or("the directory response has `Signature-Input` but no `Signature` header")?;
    let inputs = parse_signature_inputs(input_header).map_err(|e| format!("`Signature-Input`: {e}"))?;
    let mut signed = Vec::new();
    for input in inputs.iter().filter(|i| i.tag.as_deref() == Some(TAG)) {
        let label = clip(&input.label);
        let fail = |m: String| format!("directory signature `{label}`: {m}");
        if let Some(alg) = &input.alg {
            if alg != "ed25519" {
                return Err(fail(format!("algorithm `{}` is not accepted, expected `ed25519`", clip(alg))));
            }
        }
        time_window(input, now, skew).map_err(|(_, m)| fail(m))?;
        if !input.components.iter().any(|c| c.name == "@authority" && c.req) {
            return Err(fail("does not cover `\"@authority\";req`".into()));
        }
        let keyid = input.keyid.as_deref().ok_or_else(|| fail("has no `keyid`".into()))?;
        let key = set.by_thumbprint(keyid).ok_or_else(|| {
            fail(format!(
                "key `{}` is not in the directory (keyid must be a listed key's thumbprint)",
                clip(keyid)
            ))
        })?;
        let base = signature_base(input, |c| match (c.name.as_str(), c.req) {
            ("@authority", true) => Ok(authority.to_owned()),
            ("content-digest", false) => {
                let digest = response
                    .content_digest
                    .ok_or("`content-digest` is covered but the response has no `Content-Digest`")?;
                check_content_digest(digest, response.text.as_bytes())?;
                Ok(digest.trim().to_owned())
            }
            _ => Err(format!("component `{}` is not supported in a directory signature", c.identifier())),
        })
        .map_err(fail)?;
        let signature =
            signature_for(sig_header, &input.label).map_err(|e| fail(format!("`Signature`: {e}")))?;
        keys::verify_signature(Alg::EdDSA, &key.key, base.as_bytes(), &signature)
            .map_err(|e| fail(format!("does not verify: {e}")))?;
        signed.push(key.thumbprint.clone());
    }
    if signed.is_empty() {
        return Err(format!("the directory response has no signature with `tag=\"{TAG}\"`"));
    }
    Ok(signed)
}

/// RFC 9530 `Content-Digest` against `body`: at least one `sha-256` or
/// `sha-512` member, and every such member matches (others are ignored).
fn check_content_digest(header: &str, body: &[u8]) -> Result<(), String> {
    use base64::Engine as _;
    let mut checked = 0;
    for member in split_top_level(header, ',') {
        let Some((alg, value)) = member.trim().split_once('=') else {
            return Err("`Content-Digest` is malformed".into());
        };
        let expected: Vec<u8> = match alg.trim() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue,
        };
        let given = value
            .trim()
            .strip_prefix(':')
            .and_then(|v| v.strip_suffix(':'))
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .ok_or("`Content-Digest` is malformed")?;
        if given != expected {
            return Err(format!("`Content-Digest` `{}` does not match the body", alg.trim()));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err("`Content-Digest` has no `sha-256` or `sha-512` member".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;
    use crate::keys::parse_jwk;
    use crate::mint::{self, SigningKey};
    use base64::Engine as _;
    use serde_json::{json, Value};

    const NOW: i64 = 1_767_225_600;
    const AUTHORITY: &str = "crawler.test";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_random(Alg::EdDSA, &[seed; 32]).unwrap()
    }
    fn public(k: &SigningKey) -> Value {
        let mut jwk = k.public_jwk("x");
        let o = jwk.as_object_mut().unwrap();
        o.remove("kid");
        o.remove("alg");
        o.remove("use");
        jwk
    }
    fn thumbprint(k: &SigningKey) -> String {
        parse_jwk(&public(k)).unwrap().unwrap().thumbprint
    }

    /// One signature member as npm `http-message-sig`'s `directoryResponseHeaders` writes it.
    struct Binding<'k> {
        label: &'static str,
        key: &'k SigningKey,
        keyid: String,
        authority: &'static str,
        created: i64,
        expires: i64,
        tag: &'static str,
        digest: bool,
    }

    impl<'k> Binding<'k> {
        fn new(label: &'static str, key: &'k SigningKey) -> Binding<'k> {
            Binding {
                label,
                key,
                keyid: thumbprint(key),
                authority: AUTHORITY,
                created: NOW - 10,
                expires: NOW + 3600,
                tag: TAG,
                digest: false,
            }
        }
        fn headers(&self, digest: &str) -> (String, String) {
            let components =
                if self.digest { "(\"@authority\";req \"content-digest\")" } else { "(\"@authority\";req)" };
            let params = format!(
                "{components};created={};keyid=\"{}\";alg=\"ed25519\";expires={};tag=\"{}\"",
                self.created, self.keyid, self.expires, self.tag
            );
            let mut base = format!("\"@authority\";req: {}\n", self.authority);
            if self.digest {
                base.push_str(&format!("\"content-digest\": {digest}\n"));
            }
            base.push_str(&format!("\"@signature-params\": {params}"));
            let sig =
                base64::engine::general_purpose::STANDARD.encode(mint::sign_bytes(self.key, base.as_bytes()));
            (format!("{}={params}", self.label), format!("{}=:{sig}:", self.label))
        }
    }

    fn digest_of(text: &str) -> String {
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
        )
    }

    fn check(text: &str, bindings: &[Binding<'_>], digest: Option<&str>) -> Result<Vec<String>, String> {
        let digest_value = digest.map(str::to_owned).unwrap_or_else(|| digest_of(text));
        let (inputs, sigs): (Vec<String>, Vec<String>) =
            bindings.iter().map(|b| b.headers(&digest_value)).unzip();
        let (input, sig) = (inputs.join(", "), sigs.join(", "));
        let doc: Value = serde_json::from_str(text).unwrap();
        let (set, _) = KeySet::from_jwks(&doc).unwrap();
        let response = DirectoryResponse {
            text,
            signature_input: (!bindings.is_empty()).then_some(input.as_str()),
            signature: (!bindings.is_empty()).then_some(sig.as_str()),
            content_digest: Some(&digest_value),
        };
        verify(&set, &response, AUTHORITY, NOW, 30)
    }

    fn directory(keys: &[&SigningKey]) -> String {
        json!({"keys": keys.iter().map(|k| public(k)).collect::<Vec<_>>()}).to_string()
    }

    #[test]
    fn each_key_signed_for_the_authority_is_trusted() {
        let (a, b) = (key(1), key(2));
        let text = directory(&[&a, &b]);
        let signed =
            check(&text, &[Binding::new("binding0", &a), Binding::new("binding1", &b)], None).unwrap();
        assert_eq!(signed, [thumbprint(&a), thumbprint(&b)]);
        // Only `a` signs: only `a` is returned (the engine drops `b`).
        assert_eq!(check(&text, &[Binding::new("binding0", &a)], None).unwrap(), [thumbprint(&a)]);
    }

    #[test]
    fn wrong_authority_expired_future_and_foreign_keys_are_refused() {
        let (a, stranger) = (key(1), key(9));
        let text = directory(&[&a]);
        let wrong_host = Binding { authority: "evil.test", ..Binding::new("binding0", &a) };
        assert!(check(&text, &[wrong_host], None).unwrap_err().contains("does not verify"));
        let expired = Binding { created: NOW - 7200, expires: NOW - 60, ..Binding::new("binding0", &a) };
        assert!(check(&text, &[expired], None).unwrap_err().contains("expired 60 s ago"));
        // Within the clock skew is still fine.
        let just = Binding { created: NOW - 100, expires: NOW - 20, ..Binding::new("binding0", &a) };
        assert!(check(&text, &[just], None).is_ok());
        let future = Binding { created: NOW + 600, ..Binding::new("binding0", &a) };
        assert!(check(&text, &[future], None).unwrap_err().contains("in the future"));
        // Signed by a key the directory does not list.
        let foreign = Binding::new("binding0", &stranger);
        assert!(check(&text, &[foreign], None).unwrap_err().contains("is not in the directory"));
        // A listed keyid, but the signature is by another key.
        let forged = Binding { keyid: thumbprint(&a), ..Binding::new("binding0", &stranger) };
        assert!(check(&text, &[forged], None).unwrap_err().contains("does not verify"));
        // One bad signature refuses the directory even when another is good.
        let b = key(2);
        let text2 = directory(&[&a, &b]);
        let bad = Binding { authority: "evil.test", ..Binding::new("binding1", &b) };
        assert!(check(&text2, &[Binding::new("binding0", &a), bad], None).is_err());
    }

    #[test]
    fn unsigned_untagged_and_unsupported_are_refused() {
        let a = key(1);
        let text = directory(&[&a]);
        assert!(check(&text, &[], None).unwrap_err().contains("not signed"));
        let other_tag = Binding { tag: "web-bot-auth", ..Binding::new("sig1", &a) };
        assert!(check(&text, &[other_tag], None).unwrap_err().contains("no signature with `tag"));
        // `@authority` without `req`, or another component: refused.
        let (set, _) = KeySet::from_jwks(&serde_json::from_str(&text).unwrap()).unwrap();
        for input in [
            format!("b=(\"@authority\");created={};expires={};keyid=\"{}\";tag=\"{TAG}\"", NOW, NOW + 60, thumbprint(&a)),
            format!(
                "b=(\"@authority\";req \"content-type\");created={};expires={};keyid=\"{}\";tag=\"{TAG}\"",
                NOW,
                NOW + 60,
                thumbprint(&a)
            ),
            format!("b=(\"@authority\";req);created={};keyid=\"{}\";tag=\"{TAG}\"", NOW, thumbprint(&a)),
            format!(
                "b=(\"@authority\";req);created={};expires={};keyid=\"{}\";alg=\"rsa-pss-sha512\";tag=\"{TAG}\"",
                NOW,
                NOW + 60,
                thumbprint(&a)
            ),
        ] {
            let response = DirectoryResponse {
                text: &text,
                signature_input: Some(&input),
                signature: Some("b=:AAAA:"),
                content_digest: None,
            };
            assert!(verify(&set, &response, AUTHORITY, NOW, 30).is_err(), "{input}");
        }
    }

    #[test]
    fn content_digest_binds_the_key_set() {
        let a = key(1);
        let text = directory(&[&a]);
        let with_digest = || Binding { digest: true, ..Binding::new("binding0", &a) };
        assert!(check(&text, &[with_digest()], None).is_ok());
        // The body was changed after signing: the digest no longer matches.
        let tampered = text.replace("\"OKP\"", "\"OKP\" ");
        let signed_digest = digest_of(&text);
        assert!(check(&tampered, &[with_digest()], Some(&signed_digest))
            .unwrap_err()
            .contains("does not match the body"));
        // A digest with no known algorithm is refused.
        assert!(check(&text, &[with_digest()], Some("md5=:AAAA:")).unwrap_err().contains("no `sha-256`"));
        let sha512 = format!(
            "sha-512=:{}:",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(text.as_bytes()))
        );
        assert!(check(&text, &[with_digest()], Some(&sha512)).is_ok());
    }

    #[test]
    fn authorities() {
        assert_eq!(authority_of("https://Crawler.Test/.well-known/x").unwrap(), "crawler.test");
        assert_eq!(authority_of("https://crawler.test:443/x").unwrap(), "crawler.test");
        assert_eq!(authority_of("https://crawler.test:8443/x").unwrap(), "crawler.test:8443");
        assert_eq!(authority_of("http://127.0.0.1:8080/x?y").unwrap(), "127.0.0.1:8080");
        assert_eq!(authority_of("http://a.test:80").unwrap(), "a.test");
        assert!(authority_of("https://user@a.test/").is_err());
        assert!(authority_of("ftp://a.test/").is_err());
        assert!(authority_of("https:///x").is_err());
    }
}
