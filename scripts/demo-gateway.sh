#!/usr/bin/env bash
# Starts the agentguard gateway locally: the Worker in js/worker/ running in
# workerd (the open-source Workers runtime) in front of a tiny demo origin,
# with the example policy (examples/policy.json). Prints the URL and how to
# mint a token and call it. Ctrl-C stops both.
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
cli="$root/target/debug/agentguard"
cargo build --quiet --features cli --bin agentguard # the CLI mints the example token

for port in "$gw_port" "$origin_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use; set AGENTGUARD_GATEWAY_PORT / AGENTGUARD_ORIGIN_PORT" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The example policy, with loopback added to its network allow-lists: locally
# every call comes from 127.0.0.1 (workerd's TCP peer), which the example's
# production ranges would refuse. On Cloudflare the rules apply as written.
policy_src=examples/policy.json
[ -f "$policy_src" ] || policy_src=tests/vectors/policy.json
node -e '
  const p = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const n of [p.network, ...p.routes.map((r) => r.network)]) if (n) n.allow.push("127.0.0.0/8", "::1/128");
  process.stdout.write(JSON.stringify(p, null, 2));
' "$policy_src" >"$work/policy.json"
"$cli" check "$work/policy.json" >/dev/null

node js/worker/demo-origin.mjs "$origin_port" >"$work/origin.log" 2>&1 &
pids+=($!)
AGENTGUARD_POLICY="$(cat "$work/policy.json")" "$WORKERD_BIN" serve js/worker/workerd.capnp \
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

url="http://127.0.0.1:$gw_port"
cat <<TXT

agentguard gateway (workerd)   $url
demo origin                    http://127.0.0.1:$origin_port
policy                         $policy_src (+ 127.0.0.0/8 and ::1 in its network allow-lists)

Mint a token (the example issuer's key; claims as the example policy wants):
  echo '$(tr -d '\n' <"$work/claims.json" | tr -s ' ')' > /tmp/claims.json
  TOKEN=\$(cargo run -q --features cli -- mint --key examples/keys/issuer.private.jwk.json --claims /tmp/claims.json --ttl 10m)

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

if [ $check = 1 ]; then
  echo "demo gateway check passed"
  exit 0
fi
echo
echo "decision log (one JSON line per request) follows; Ctrl-C stops the gateway and the origin."
tail -n +1 -f "$work/workerd.log" &
pids+=($!)
wait "${pids[1]}"
