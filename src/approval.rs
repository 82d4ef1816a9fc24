//! Stage 10: the risk gate — high-risk actions need a human approval bound to
//! the exact action.
//!
//! The action digest is base64url(SHA-256) over this canonical form, one field
//! per line, each line ending in `\n`:
//!
//! ```text
//! agentguard-action-v1
//! <METHOD>
//! <host>
//! <normalised path>
//! <raw query, or empty>
//! ```
//!
//! This build issues the `approval_required` challenge with that digest;
//! verifying approval tokens against it arrives with the approval-gate work,
//! so until then a high-risk route is never allowed (fail closed).

use sha2::{Digest, Sha256};

use crate::b64;
use crate::decision::ApprovalChallenge;
use crate::request::Request;
use crate::route::Route;

/// The canonical action text for a request.
pub fn canonical_action(request: &Request) -> String {
    format!(
        "agentguard-action-v1\n{}\n{}\n{}\n{}\n",
        request.method,
        request.host,
        request.path,
        request.query.as_deref().unwrap_or("")
    )
}

/// The challenge for a request to a high-risk route.
pub fn challenge(request: &Request, route: &Route, agent: &str) -> ApprovalChallenge {
    let digest = Sha256::digest(canonical_action(request).as_bytes());
    ApprovalChallenge {
        action_digest: b64::encode(&digest),
        binding_message: format!(
            "{} wants to {} {} ({})",
            crate::keys::clip(agent),
            request.method,
            crate::keys::clip(&request.path),
            route.id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_method_host_path_and_query() {
        let a = Request::builder("POST", "/v1/payments?x=1", 0).host("api").build().unwrap();
        let b = Request::builder("POST", "/v1/payments?x=2", 0).host("api").build().unwrap();
        assert_eq!(canonical_action(&a), "agentguard-action-v1\nPOST\napi\n/v1/payments\nx=1\n");
        assert_ne!(canonical_action(&a), canonical_action(&b));
    }
}
