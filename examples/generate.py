#!/usr/bin/env python3
"""Regenerates the example tokens, requests and policy tests with the CLI.

    cargo build --features cli && python3 examples/generate.py

Ed25519 signatures are deterministic, so the output only changes when the
inputs here change; tests/cli.rs checks the committed files still decide as
documented.
"""
import json, os, subprocess, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.environ.get("AGENTGUARD", os.path.join(HERE, "..", "target", "debug", "agentguard"))
NOW = 1767261600  # 2026-01-01T10:00:00Z: the time every example request is made
KEY = os.path.join(HERE, "keys", "issuer.private.jwk.json")

BASE = {
    "iss": "https://sts.example.com",
    "aud": "https://api.example.com",
    "sub": "user:alice@example.com",
    "client_id": "crm-assistant",
    "act": {"sub": "spiffe://prod.example.com/agents/crm-assistant"},
    "scope": "crm.read mail.draft",
}


def mint(name, iat=NOW - 60, ttl="10m", **claims):
    body = dict(BASE, jti=f"example-{name}", **claims)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    out = subprocess.run([CLI, "mint", "--key", KEY, "--claims", f.name, "--now", str(iat), "--ttl", ttl],
                         check=True, capture_output=True, text=True).stdout.strip()
    os.unlink(f.name)
    return out


def request(method, path, token=None, **extra):
    headers = {"user-agent": "crm-assistant/1.4"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return dict({"method": method, "host": "api.example.com", "path": path, "headers": headers,
                 "source_ip": "10.1.2.3", "now": NOW}, **extra)


agent = mint("agent")
examples = [
    ("read-contact", request("GET", "/v1/contacts/42", agent),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("list-contacts", request("GET", "/v1/contacts?page=2", agent),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("draft-email", request("POST", "/v1/drafts", agent),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("pay-without-scope", request("POST", "/v1/invoices/981/pay", agent),
     {"decision": "deny", "status": 403, "reasons": ["scope_insufficient"]}),
    ("pay-needs-approval", request("POST", "/v1/invoices/981/pay", mint("payer", scope="crm.read payments.write")),
     {"decision": "approval_required", "status": 403, "reasons": ["approval_required"]}),
    ("no-token", request("GET", "/v1/contacts/42"),
     {"decision": "deny", "status": 401, "reasons": ["credential_missing"]}),
    ("expired-token", request("GET", "/v1/contacts/42", mint("expired", iat=NOW - 3600, ttl="5m")),
     {"decision": "deny", "status": 401, "reasons": ["token_expired"]}),
    ("wrong-audience", request("GET", "/v1/contacts/42", mint("other-api", aud="https://billing.example.com")),
     {"decision": "deny", "status": 401, "reasons": ["token_audience_invalid"]}),
    ("path-traversal", request("GET", "/v1/contacts/42/../../admin/users", agent),
     {"decision": "deny", "status": 403, "reasons": ["route_not_matched"]}),
    ("unknown-agent", request("GET", "/v1/contacts/42",
                              mint("stranger", act={"sub": "spiffe://dev.example.com/agents/test"})),
     {"decision": "deny", "status": 403, "reasons": ["delegation_actor_not_allowed"]}),
    ("revoked-agent", request("GET", "/v1/contacts/42",
                              mint("legacy", act={"sub": "spiffe://prod.example.com/agents/legacy-importer"})),
     {"decision": "revoked", "status": 401, "reasons": ["revoked_agent"]}),
]

os.makedirs(os.path.join(HERE, "requests"), exist_ok=True)
cases = []
for name, req, expect in examples:
    with open(os.path.join(HERE, "requests", f"{name}.json"), "w") as f:
        json.dump(req, f, indent=2)
        f.write("\n")
    cases.append({"name": name, "request": req, "expect": expect})
with open(os.path.join(HERE, "policy.tests.json"), "w") as f:
    json.dump({"policy": "policy.json", "cases": cases}, f, indent=2)
    f.write("\n")
with open(os.path.join(HERE, "token.jwt"), "w") as f:
    f.write(agent + "\n")
print(f"wrote {len(examples)} requests and examples/policy.tests.json")
