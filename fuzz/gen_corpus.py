#!/usr/bin/env python3
"""Builds the fuzz corpora's starting points from the project's test vectors.

    python3 fuzz/gen_corpus.py [OUT_DIR]      # default: fuzz/corpus

Writes OUT_DIR/<target>/seed-* files (one input each) from
tests/wycheproof/*.json, tests/vectors/*.json, examples/ and the small
hand-written seeds in fuzz/seeds/<target>/. The result is not committed
(fuzz/.gitignore): it is regenerated on every run of scripts/fuzz.sh, and
libFuzzer adds the inputs it finds to the same folders.
"""

import base64
import glob
import hashlib
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")


def load(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return json.load(f)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def public(jwk):
    return {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}


def tokens():
    """Compact JWS strings from the vectors and examples."""
    out = []
    for g in load("tests/wycheproof/json_web_signature_test.json")["testGroups"]:
        out += [t["jws"] for t in g["tests"] if isinstance(t.get("jws"), str)]
    for g in load("tests/wycheproof/json_web_key_test.json")["testGroups"]:
        out += [t["jws"] for t in g["tests"] if isinstance(t.get("jws"), str)]
    with open(os.path.join(ROOT, "examples", "token.jwt"), encoding="utf-8") as f:
        out.append(f.read().strip())
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "requests", "*.json"))):
        with open(path, encoding="utf-8") as f:
            req = json.load(f)
        for name, value in req.get("headers", {}).items():
            if isinstance(value, str):
                value = value.split(" ", 1)[-1]
                if value.count(".") == 2:
                    out.append(value)
    return out


def jws():
    for t in tokens():
        write("jws", b"\x00" + t.encode())
    # Signed mode: header 0xff payload, Ed25519 (mode 1) and P-256 (mode 3).
    headers = [
        {"alg": "EdDSA", "typ": "at+jwt", "kid": "test-ed25519"},
        {"alg": "EdDSA"},
        {"alg": "ES256", "kid": "test-es256"},
        {"alg": "ES256", "crit": ["exp"]},
        {"alg": "EdDSA", "jwk": {"kty": "OKP"}, "x5c": ["AA"]},
        {"alg": "none"},
        {"alg": "HS256", "kid": "test-ed25519"},
        {"alg": "RS256", "kid": "rsa"},
    ]
    for mode in (1, 3):
        for h in headers:
            payload = {"iss": "https://sts.test", "sub": "u", "exp": 1767226200}
            write("jws", bytes([mode]) + json.dumps(h).encode() + b"\xff" + json.dumps(payload).encode())


def jwks():
    keys = load("tests/vectors/keys.json")
    sets = [{"keys": [public(keys[k]) for k in ("ed25519", "es256", "approver")]}]
    for f in ("ed25519_test", "ecdsa_secp256r1_sha256_p1363_test"):
        g = load(f"tests/wycheproof/{f}.json")["testGroups"][0]
        sets.append({"keys": [g["publicKeyJwk"]]})
    rsa = load("tests/wycheproof/rsa_signature_2048_sha256_test.json")["testGroups"][0]["keyJwk"]
    sets.append({"keys": [rsa]})
    for f in ("json_web_signature_test", "json_web_key_test"):
        for g in load(f"tests/wycheproof/{f}.json")["testGroups"]:
            private = g.get("private")
            if isinstance(private, dict):
                if "keys" in private:
                    sets.append({"keys": [public(k) for k in private["keys"]]})
                    sets.append(private)
                else:
                    sets.append({"keys": [public(private)]})
    for s in sets:
        write("jwks", json.dumps(s))
        for k in s.get("keys", []):
            write("jwks", json.dumps(k))


def policy():
    for path in ["examples/policy.json", "examples/broken-policy.json", "tests/vectors/policy.json"]:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            write("policy", f.read())
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "envoy", "*.json"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict) and "issuers" in doc:
            write("policy", text)


def path():
    patterns = ["/**", "/v1/contacts", "/v1/contacts/{id}/**", "/v1/invoices/{id}/pay", "/a/*/b", "/", "/a/"]
    targets = [
        "/v1/contacts/42", "/v1/contacts/../admin", "/a/./b//c/", "/a%2Fb", "/%7Euser/%2e%2e/x",
        "/a/%2E%2E/b", "/v1/invoices/9/pay?x=1&y=%2F", "/..", "/a/b/..", "/%41%20%c3%a9",
    ]
    for p in patterns:
        for t in targets:
            write("path", p + "\0" + t)
    for path_ in sorted(glob.glob(os.path.join(ROOT, "examples", "requests", "*.json"))):
        with open(path_, encoding="utf-8") as f:
            write("path", "/**\0" + json.load(f)["path"])


def revocations():
    docs = [{}, {"jti": []}, {"jti": ["j"]}, {"sub": ["u"]}, {"agents": ["agent-1"]}, {"kid": ["test-ed25519"]},
            {"jti": ["a", "b"], "sub": ["c"], "agents": ["d"], "kid": ["e"]},
            {"jti": ["j"], "jti ": []}, {"users": []}, {"jti": "j"}]
    for d in docs:
        write("revocations", json.dumps(d))
    policy = load("tests/vectors/policy.json")
    write("revocations", json.dumps(policy["revoked"]))


def hand_written():
    seeds = os.path.join(ROOT, "fuzz", "seeds")
    for target in os.listdir(seeds) if os.path.isdir(seeds) else []:
        for name in os.listdir(os.path.join(seeds, target)):
            dst = os.path.join(OUT, target)
            os.makedirs(dst, exist_ok=True)
            shutil.copyfile(os.path.join(seeds, target, name), os.path.join(dst, name))


if __name__ == "__main__":
    jws()
    jwks()
    policy()
    path()
    revocations()
    hand_written()
    # The structured targets (`arbitrary`) take any bytes: start them from a few
    # deterministic random inputs of useful sizes rather than from nothing.
    import random
    rng = random.Random(20260101)
    for t, sizes in (("dpop", (64, 128, 256, 512, 1024)), ("decide", (256, 512, 1024, 2048, 4000))):
        for size in sizes:
            for _ in range(4):
                write(t, bytes(rng.getrandbits(8) for _ in range(size)))
    counts = {t: len(os.listdir(os.path.join(OUT, t))) for t in sorted(os.listdir(OUT))}
    print("corpus seeds:", ", ".join(f"{t} {n}" for t, n in counts.items()))
