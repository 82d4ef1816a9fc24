//! Revocations pushed at run time, shared by every worker through Envoy's
//! shared data: an operator adds entries with
//! `POST /_agentguard/revocations?jti=…&sub=…&agent=…&kid=…` (each parameter
//! may repeat), the worker that serves it writes the merged lists to one
//! shared-data key with compare-and-swap, and every worker puts them in force
//! (on top of the policy's own `revoked` lists) within one tick (1 s). The
//! engine is not rebuilt: caches and per-agent state stay. The lists outlive a
//! configuration update (same plugin name), not an Envoy restart: put lasting
//! revocations in the policy.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::policy::RevocationLists;

/// Most entries the pushed lists may hold together (a push beyond is refused).
pub const MAX_PUSHED: usize = 10_000;
/// Compare-and-swap attempts before a push gives up (another worker kept writing).
const ATTEMPTS: usize = 16;

/// The shared-data key of the pushed lists for plugin namespace `ns`.
pub fn key(ns: &str) -> String {
    format!("{ns}.revocations.v1")
}

/// The pushed lists and the shared-data version they were read at.
pub fn read(key: &str) -> Result<(RevocationLists, Option<u32>), String> {
    let (bytes, cas) = hostcalls::get_shared_data(key).map_err(|s| format!("cannot read `{key}` ({s:?})"))?;
    let lists = match bytes {
        Some(b) if !b.is_empty() => {
            serde_json::from_slice(&b).map_err(|e| format!("unreadable shared data at `{key}`: {e}"))?
        }
        _ => RevocationLists::default(),
    };
    Ok((lists, cas))
}

/// Adds `more` to the pushed lists; returns them as now stored.
pub fn push(key: &str, more: &RevocationLists) -> Result<RevocationLists, String> {
    for _ in 0..ATTEMPTS {
        let (mut lists, cas) = read(key)?;
        lists.extend(more);
        if lists.len() > MAX_PUSHED {
            return Err(format!("the pushed revocation lists would hold more than {MAX_PUSHED} entries"));
        }
        let bytes = serde_json::to_vec(&lists).map_err(|e| e.to_string())?;
        match hostcalls::set_shared_data(key, Some(&bytes), cas) {
            Ok(()) => return Ok(lists),
            Err(Status::CasMismatch) => continue,
            Err(s) => return Err(format!("cannot write `{key}` ({s:?})")),
        }
    }
    Err(format!("`{key}` kept changing; try again"))
}

/// The entries a push request names: `jti`, `sub`, `agent` and `kid` query
/// parameters (repeatable, percent-decoded); empty values are ignored.
pub fn from_query(path: &str) -> Option<RevocationLists> {
    let mut lists = RevocationLists::default();
    let (_, query) = path.split_once('?')?;
    for pair in query.split('#').next().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = super::mapping::percent_decode(name)?;
        let value = super::mapping::percent_decode(value)?;
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "jti" => lists.jti.push(value),
            "sub" => lists.sub.push(value),
            "agent" => lists.agents.push(value),
            "kid" => lists.kid.push(value),
            _ => return None,
        }
    }
    (!lists.is_empty()).then_some(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_names_its_entries_in_the_query() {
        let l = from_query("/_agentguard/revocations?jti=a&jti=b&agent=spiffe%3A%2F%2Ft%2Fbot&kid=k1&sub=")
            .unwrap();
        assert_eq!(l.jti, ["a", "b"]);
        assert_eq!(l.agents, ["spiffe://t/bot"]);
        assert_eq!(l.kid, ["k1"]);
        assert!(l.sub.is_empty());
        assert!(from_query("/_agentguard/revocations").is_none(), "nothing named");
        assert!(from_query("/_agentguard/revocations?jti=").is_none(), "only empty values");
        assert!(from_query("/_agentguard/revocations?user=x").is_none(), "unknown parameter");
        assert!(from_query("/_agentguard/revocations?jti=%zz").is_none(), "bad encoding");
    }
}
