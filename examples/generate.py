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


def approve(req):
    """What an approval service does after a human taps approve: read the
    challenge from agentguard's answer, sign an approval bound to it."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(req, f)
    decision = json.loads(subprocess.run([CLI, "eval", "--policy", os.path.join(HERE, "policy.json"),
                                          "--request", f.name], check=True, capture_output=True, text=True).stdout)
    os.unlink(f.name)
    challenge = decision["approval"]
    return subprocess.run([CLI, "approve", "--key", os.path.join(HERE, "keys", "approver.private.jwk.json"),
                           "--digest", challenge["action_digest"], "--agent", challenge["agent"],
                           "--iss", "https://approvals.example.com", "--aud", "https://api.example.com",
                           "--sub", "user:cfo@example.com", "--now", str(NOW - 30), "--ttl", "5m"],
                          check=True, capture_output=True, text=True).stdout.strip()


def with_header(req, name, value):
    req = json.loads(json.dumps(req))
    req["headers"][name] = value
    return req


agent = mint("agent")
payer = mint("payer", scope="crm.read payments.write")
pay = request("POST", "/v1/invoices/981/pay", payer, body_sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
approval = approve(pay)
# A transfer on a low-risk route: its body decides (approval_when: amount over
# 1000, or a currency other than EUR/USD, needs a human).
small = request("POST", "/v1/transfers", payer, body='{"amount": 250, "currency": "EUR", "to": "DE89370400440532013000"}')
large = request("POST", "/v1/transfers", payer, body='{"amount": 1500, "currency": "EUR", "to": "DE89370400440532013000"}')
large_approval = approve(large)
# Requests marked True only make sense after the ones before them (the policy
# tests run in one engine); they get no standalone request file.
examples = [
    ("read-contact", request("GET", "/v1/contacts/42", agent),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("list-contacts", request("GET", "/v1/contacts?page=2", agent),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("draft-email", request("POST", "/v1/drafts", agent),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("pay-without-scope", request("POST", "/v1/invoices/981/pay", agent),
     {"decision": "deny", "status": 403, "reasons": ["scope_insufficient"]}),
    ("pay-needs-approval", pay,
     {"decision": "approval_required", "status": 403, "reasons": ["approval_required"]}),
    ("pay-with-approval", with_header(pay, "x-agent-approval", approval),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("pay-approval-reused", with_header(pay, "x-agent-approval", approval),
     {"decision": "deny", "status": 403, "reasons": ["approval_replayed"]}, True),
    ("pay-other-invoice", with_header(dict(pay, path="/v1/invoices/982/pay"), "x-agent-approval", approval),
     {"decision": "deny", "status": 403, "reasons": ["approval_digest_mismatch"]}),
    ("pay-too-often", pay,
     {"decision": "deny", "status": 429, "reasons": ["rate_limited"]}, True),
    ("transfer-small", small,
     {"decision": "allow", "status": 200, "reasons": []}),
    ("transfer-needs-approval", large,
     {"decision": "approval_required", "status": 403, "reasons": ["approval_required"]}),
    ("transfer-with-approval", with_header(large, "x-agent-approval", large_approval),
     {"decision": "allow", "status": 200, "reasons": []}),
    ("transfer-other-amount", with_header(dict(large, body=large["body"].replace("1500", "150000")),
                                          "x-agent-approval", large_approval),
     {"decision": "deny", "status": 403, "reasons": ["approval_digest_mismatch"]}, True),
    ("outside-network", dict(request("GET", "/v1/contacts/42", agent), source_ip="203.0.113.9"),
     {"decision": "deny", "status": 403, "reasons": ["network_not_allowed"]}),
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
for name, req, expect, *sequence in examples:
    if not sequence:
        with open(os.path.join(HERE, "requests", f"{name}.json"), "w") as f:
            json.dump(req, f, indent=2)
            f.write("\n")
    cases.append({"name": name, "request": req, "expect": expect})
with open(os.path.join(HERE, "policy.tests.json"), "w") as f:
    json.dump({"policy": "policy.json", "cases": cases}, f, indent=2)
    f.write("\n")
with open(os.path.join(HERE, "token.jwt"), "w") as f:
    f.write(agent + "\n")
print(f"wrote {sum(1 for e in examples if len(e) == 3)} request files and {len(cases)} cases in examples/policy.tests.json")
