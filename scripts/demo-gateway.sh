#!/usr/bin/env bash
# Starts the agentguard gateway locally: the Worker in js/worker/ running in
# workerd (the open-source Workers runtime) in front of a tiny demo origin,
# with the example policy (examples/policy.json) plus a demo token service
# (RFC 8693 token exchange at POST /token, keys generated per run). Prints
# the URL and how to mint a token — directly, or by exchange — and call it.
# Ctrl-C stops both.
#
#   bash scripts/demo-gateway.sh            # run until Ctrl-C
#   bash scripts/demo-gateway.sh --check    # start, make the example calls, stop
#
# Ports: AGENTGUARD_GATEWAY_PORT (8787) and AGENTGUARD_ORIGIN_PORT (8788), on 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
check=0
[ "${1:-}" = "--check" ] && check=1
gw_port="${AGENTGUARD_GATEWAY_PORT:-8787}"
origin_port="${AGENTGUARD_ORIGIN_PORT:-8788}"

bash scripts/install-tools.sh rust wasm node >/dev/null
. .tools/env.sh

# Build what is missing or older than its sources.
if [ ! -f js/dist/.built ] || [ -n "$(find src Cargo.toml -newer js/dist/.built | head -n1)" ]; then
  echo "building js/dist ..."
  bash scripts/build-js.sh
fi
# The CLI mints the example token (AGENTGUARD_CLI: one already built, as the tests pass).
cli="${AGENTGUARD_CLI:-$root/target/debug/agentguard}"
[ -n "${AGENTGUARD_CLI:-}" ] || cargo build --quiet --features cli --bin agentguard

for port in "$gw_port" "$origin_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; set AGENTGUARD_GATEWAY_PORT / AGENTGUARD_ORIGIN_PORT" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
# This run's demo keys and tokens, for the printed commands: removed with the
# rest when the demo stops (they only work against this run's gateway), unless
# AGENTGUARD_KEEP_TMP=1.
keep="$(mktemp -d /tmp/agentguard-demo.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${AGENTGUARD_KEEP_TMP:-}" = 1 ]; then echo "AGENTGUARD_KEEP_TMP: kept $work $keep" >&2; else rm -rf "$work" "$keep"; fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Demo keys, fresh per run: an identity provider's (it issues the user's ID
# token and the workload's identity token) and the gateway's token-service
# signing key (its private half goes to workerd as AGENTGUARD_SIGNING_KEYS,
# the way a Workers secret would).
"$cli" keygen --alg ES256 --kid demo-idp >"$work/idp.json"
"$cli" keygen --alg EdDSA --kid demo-edge >"$work/edge.json"

# The example policy, with loopback added to its network allow-lists: locally
# every call comes from 127.0.0.1 (workerd's TCP peer), which the example's
# production ranges would refuse. On Cloudflare the rules apply as written.
# Added for the demo: a token service whose federation rule trades the demo
# IdP's tokens (user + workload) for an example-policy token, and the
# gateway's own issuer (its public key) so those tokens are accepted.
policy_src=examples/policy.json
[ -f "$policy_src" ] || policy_src=tests/vectors/policy.json
node -e '
  const fs = require("fs");
  const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  for (const n of [p.network, ...p.routes.map((r) => r.network)]) if (n) n.allow.push("127.0.0.0/8", "::1/128");
  const idp = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const edge = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
  const aud = p.issuers[0].audiences[0];
  p.issuers.push({ ...p.issuers[0], iss: "https://gateway.demo.local", jwks: edge.jwks, jwks_uri: undefined, algorithms: ["EdDSA"] });
  p.token_service = {
    issuer: "https://gateway.demo.local",
    signing_kid: "demo-edge",
    default_lifetime: "5m",
    federation: [{
      id: "crm-assistant",
      issuer: { iss: "https://idp.demo.local", audiences: ["https://gateway.demo.local"], jwks: idp.jwks, algorithms: ["ES256"] },
      subjects: ["user:*"],
      actors: ["spiffe://prod.example.com/agents/*"],
      scopes: ["crm.read", "mail.draft"],
      audiences: [aud],
      max_lifetime: "10m",
    }],
  };
  process.stdout.write(JSON.stringify(p, null, 2));
' "$policy_src" "$work/idp.json" "$work/edge.json" >"$work/policy.json"
"$cli" check "$work/policy.json" >/dev/null
node -e 'const k = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(JSON.stringify({ keys: [k.private] }))' \
  "$work/edge.json" >"$work/signing-keys.json"

node js/worker/demo-origin.mjs "$origin_port" >"$work/origin.log" 2>&1 &
pids+=($!)
AGENTGUARD_POLICY="$(cat "$work/policy.json")" AGENTGUARD_SIGNING_KEYS="$(cat "$work/signing-keys.json")" "$WORKERD_BIN" serve js/worker/workerd.capnp \
  --socket-addr "http=127.0.0.1:$gw_port" --external-addr "origin=127.0.0.1:$origin_port" \
  >"$work/workerd.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$gw_port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$origin_port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$gw_port") 2>/dev/null || { cat "$work/workerd.log" >&2; echo "workerd did not start" >&2; exit 1; }

# Claims for the example agent: a CRM assistant acting for alice.
cat >"$work/claims.json" <<JSON
{
  "iss": "https://sts.example.com",
  "aud": "https://api.example.com",
  "sub": "user:alice@example.com",
  "client_id": "crm-assistant",
  "act": {"sub": "spiffe://prod.example.com/agents/crm-assistant"},
  "scope": "crm.read mail.draft"
}
JSON
[ "$policy_src" = examples/policy.json ] || { echo "examples/policy.json missing: demo needs it" >&2; exit 1; }
token="$("$cli" mint --key examples/keys/issuer.private.jwk.json --claims "$work/claims.json" --ttl 10m)"

# For the exchange: the user's ID token and the workload's identity token, from the demo IdP.
for who in user workload; do
  sub="user:alice@example.com"
  [ $who = workload ] && sub="spiffe://prod.example.com/agents/crm-assistant"
  echo "{\"iss\": \"https://idp.demo.local\", \"aud\": \"https://gateway.demo.local\", \"sub\": \"$sub\"}" >"$work/$who-claims.json"
  "$cli" mint --key "$work/idp.json" --claims "$work/$who-claims.json" --ttl 10m --typ JWT >"$work/$who.jwt"
done
cp "$work/idp.json" "$work/edge.json" "$work/user.jwt" "$work/workload.jwt" "$keep/"

url="http://127.0.0.1:$gw_port"
cat <<TXT

agentguard gateway (workerd)   $url
demo origin                    http://127.0.0.1:$origin_port
policy                         $policy_src (+ 127.0.0.0/8 and ::1 in its network allow-lists)

Mint a token (the example issuer's key; claims as the example policy wants):
  echo '$(tr -d '\n' <"$work/claims.json" | tr -s ' ')' > /tmp/claims.json
  TOKEN=\$(cargo run -q --features cli -- mint --key examples/keys/issuer.private.jwk.json --claims /tmp/claims.json --ttl 10m)

Or get one by token exchange (RFC 8693) from the gateway itself — the
user's ID token and the workload's identity token from the demo IdP
(keys and tokens of this run in $keep/):
  TOKEN=\$(curl -s $url/token -H 'content-type: application/x-www-form-urlencoded' \\
    -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\
    -d subject_token_type=urn:ietf:params:oauth:token-type:jwt -d subject_token=\$(cat $keep/user.jwt) \\
    -d actor_token_type=urn:ietf:params:oauth:token-type:jwt -d actor_token=\$(cat $keep/workload.jwt) \\
    -d scope=crm.read | node -p 'JSON.parse(require("fs").readFileSync(0)).access_token')
  curl -s $url/.well-known/oauth-authorization-server; curl -s $url/.well-known/jwks.json

Call the API through the gateway:
  curl -i -H "authorization: Bearer \$TOKEN" $url/v1/contacts/42        # 200, origin sees x-agentguard-*
  curl -i $url/v1/contacts/42                                           # 401 credential_missing
  curl -i -H "authorization: Bearer \$TOKEN" -X POST $url/v1/invoices/7/pay   # 403 scope_insufficient

TXT

call() { curl -s -o "$work/body" -w '%{http_code}' "$@"; }
status=$(call -H "authorization: Bearer $token" -H "x-agentguard-agent: spoofed" "$url/v1/contacts/42")
echo "example call with a fresh token -> $status"
sed 's/^/  /' "$work/body"
[ "$status" = 200 ] && grep -q '"x-agentguard-agent": "spiffe://prod.example.com/agents/crm-assistant"' "$work/body"
status=$(call "$url/v1/contacts/42")
echo "example call without a token -> $status $(cat "$work/body")"
[ "$status" = 401 ]
status=$(call "$url/token" -H 'content-type: application/x-www-form-urlencoded' \
  -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  -d subject_token_type=urn:ietf:params:oauth:token-type:jwt -d "subject_token=$(cat "$work/user.jwt")" \
  -d actor_token_type=urn:ietf:params:oauth:token-type:jwt -d "actor_token=$(cat "$work/workload.jwt")" \
  -d scope=crm.read)
echo "token exchange at /token -> $status"
[ "$status" = 200 ]
exchanged="$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).access_token' "$work/body")"
status=$(call -H "authorization: Bearer $exchanged" "$url/v1/contacts/42")
echo "example call with the exchanged token -> $status"
[ "$status" = 200 ] && grep -q '"x-agentguard-issuer": "https://gateway.demo.local"' "$work/body"

if [ $check = 1 ]; then
  echo "demo gateway check passed"
  exit 0
fi
echo
echo "decision log (one JSON line per request) follows; Ctrl-C stops the gateway and the origin."
tail -n +1 -f "$work/workerd.log" &
pids+=($!)
wait "${pids[1]}"
