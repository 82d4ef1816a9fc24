//! The `agentguard` binary, run as users run it.
#![cfg(feature = "cli")]
// Tests fail by panicking; the no-panic lints are for the library.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentguard")).args(args).current_dir(root()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary, which must succeed; its standard output.
fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn check_reports_every_problem_with_its_path_and_fails() {
    let out = run(&["check", "examples/broken-policy.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for path in [
        "issuers[0].audiences:",
        "issuers[0].clock_skew: expected at most `10m`, found `1h`",
        "issuers[0].jwks.keys[0]: `x`: invalid base64url",
        "routes[0].methods[0]: expected an upper-case HTTP method like `GET`, found `get`",
        "routes[1].id: route id `read` is used twice",
        "routes[1].path: `**` may only be the last segment",
    ] {
        assert!(err.contains(path), "missing `{path}` in:\n{err}");
    }
    assert!(err.contains("7 problem(s) found"), "{err}");

    let out = run(&["check", "examples/policy.json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok: 1 issuer(s), 5 route(s)"), "{}", text(&out.stdout));
}

#[test]
fn check_names_the_path_of_a_bad_duration() {
    let dir = tempdir();
    let bad = std::fs::read_to_string(root().join("examples/policy.json"))
        .unwrap()
        .replace("\"15m\"", "\"15 minutes\"");
    let path = dir.join("policy.json");
    std::fs::write(&path, bad).unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("issuers[0].max_lifetime: expected a duration like `5m`, found `15 minutes`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn eval_prints_the_documented_decisions_for_the_examples() {
    let tests: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("examples/policy.tests.json")).unwrap())
            .unwrap();
    // Every request file decides as its policy-tests case says; cases that
    // depend on earlier requests (replays, rate limits) have no file.
    let mut checked = 0;
    for case in tests["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if !root().join(format!("examples/requests/{name}.json")).exists() {
            continue;
        }
        checked += 1;
        let out = run(&[
            "eval",
            "--policy",
            "examples/policy.json",
            "--request",
            &format!("examples/requests/{name}.json"),
        ]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let decision: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        assert_eq!(decision["decision"], case["expect"]["decision"], "{name}");
        assert_eq!(decision["status"], case["expect"]["status"], "{name}");
        let codes: Vec<Value> =
            decision["reasons"].as_array().unwrap().iter().map(|r| r["code"].clone()).collect();
        assert_eq!(Value::Array(codes), case["expect"]["reasons"], "{name}");
    }
    assert!(checked >= 12, "only {checked} request files");
}

#[test]
fn test_command_passes_the_examples_and_fails_a_wrong_expectation() {
    let out = run(&["test", "examples/policy.tests.json"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("20 passed, 0 failed"), "{}", text(&out.stdout));

    let dir = tempdir();
    let mut tests: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("examples/policy.tests.json")).unwrap())
            .unwrap();
    tests["policy"] = root().join("examples/policy.json").to_str().unwrap().into();
    tests["cases"][0]["expect"]["decision"] = "deny".into();
    let path = dir.join("t.json");
    std::fs::write(&path, tests.to_string()).unwrap();
    let out = run(&["test", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("FAIL read-contact: decision `allow`, expected `deny`"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn eval_and_test_load_a_revocation_list_file() {
    // The example policy with a fetched revocation list, and a list revoking
    // the token id of the `read-contact` request.
    let dir = tempdir();
    let mut policy: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("examples/policy.json")).unwrap()).unwrap();
    policy["revocation_list"] = serde_json::json!({"uri": "https://revocations.example.com/list.json"});
    let policy_path = dir.join("policy.json");
    std::fs::write(&policy_path, policy.to_string()).unwrap();
    let request: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/requests/read-contact.json")).unwrap(),
    )
    .unwrap();
    let token = request["headers"]["authorization"].as_str().unwrap().split_once(' ').unwrap().1;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&agentguard::b64::decode(payload).unwrap()).unwrap();
    let list_path = dir.join("list.json");
    std::fs::write(&list_path, serde_json::json!({"jti": [claims["jti"]]}).to_string()).unwrap();

    let out = run(&["check", policy_path.to_str().unwrap()]);
    assert!(
        text(&out.stdout)
            .contains("a revocation list to fetch from https://revocations.example.com/list.json"),
        "{}",
        text(&out.stdout)
    );
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--policy", policy_path.to_str().unwrap()];
        args.extend(["--request", "examples/requests/read-contact.json", "--short"]);
        args.extend(extra);
        run(&args)
    };
    // Without the list the policy cannot be relied on: 503.
    assert_eq!(text(&eval(&[]).stdout).trim(), "deny 503 state_unavailable");
    let out = eval(&["--revocation-list", list_path.to_str().unwrap()]);
    assert_eq!(text(&out.stdout).trim(), "revoked 401 revoked_token", "{}", text(&out.stderr));
    // A bad list file is bad input, named with its path.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"jti": [1]}"#).unwrap();
    let out = eval(&["--revocation-list", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("jti[0]: invalid type: integer `1`"), "{}", text(&out.stderr));

    // `test` loads it before each case.
    let tests = serde_json::json!({"policy": "policy.json", "revocation_list": "list.json", "cases": [
        {"name": "revoked by the list", "request": request, "expect": {"decision": "revoked", "reasons": ["revoked_token"]}}
    ]});
    let tests_path = dir.join("t.json");
    std::fs::write(&tests_path, tests.to_string()).unwrap();
    let out = run(&["test", tests_path.to_str().unwrap()]);
    assert!(text(&out.stdout).contains("1 passed, 0 failed"), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn sign_list_signs_a_revocation_list_the_engine_verifies() {
    let dir = tempdir();
    let keys: Value =
        serde_json::from_str(&run_ok(&["keygen", "--alg", "ES256", "--kid", "lists-1"])).unwrap();
    let key_path = dir.join("list-key.json");
    std::fs::write(&key_path, keys.to_string()).unwrap();
    let mut policy: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("examples/policy.json")).unwrap()).unwrap();
    policy["revocation_list"] =
        serde_json::json!({"uri": "https://revocations.example.com/list.jws", "jwks": keys["jwks"]});
    let policy_path = dir.join("policy.json");
    std::fs::write(&policy_path, policy.to_string()).unwrap();
    let out = run(&["check", policy_path.to_str().unwrap()]);
    assert!(text(&out.stdout).contains("a signed revocation list to fetch from"), "{}", text(&out.stdout));

    // The token id of the `read-contact` request, revoked by a list signed a minute before it.
    let request: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/requests/read-contact.json")).unwrap(),
    )
    .unwrap();
    let token = request["headers"]["authorization"].as_str().unwrap().split_once(' ').unwrap().1;
    let claims: Value =
        serde_json::from_slice(&agentguard::b64::decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let list_path = dir.join("list.json");
    std::fs::write(&list_path, serde_json::json!({"jti": [claims["jti"]]}).to_string()).unwrap();
    let signed_at = (request["now"].as_f64().unwrap() as i64 - 60).to_string();
    let sign = |key: &PathBuf, list: &PathBuf| {
        run(&[
            "sign-list",
            "--key",
            key.to_str().unwrap(),
            "--list",
            list.to_str().unwrap(),
            "--now",
            &signed_at,
        ])
    };
    let out = sign(&key_path, &list_path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jws = text(&out.stdout).trim().to_owned();
    let header: Value =
        serde_json::from_slice(&agentguard::b64::decode(jws.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(
        (header["typ"].as_str(), header["kid"].as_str()),
        (Some("revocation-list+jwt"), Some("lists-1"))
    );
    let signed_path = dir.join("list.jws");
    std::fs::write(&signed_path, &jws).unwrap();
    let eval = |list: &PathBuf| {
        run(&[
            "eval",
            "--policy",
            policy_path.to_str().unwrap(),
            "--request",
            "examples/requests/read-contact.json",
            "--short",
            "--revocation-list",
            list.to_str().unwrap(),
        ])
    };
    let out = eval(&signed_path);
    assert_eq!(text(&out.stdout).trim(), "revoked 401 revoked_token", "{}", text(&out.stderr));
    // The plain list is refused by this policy, and so is one signed with another key.
    let out = eval(&list_path);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected a signed list"), "{}", text(&out.stderr));
    let other: Value =
        serde_json::from_str(&run_ok(&["keygen", "--alg", "ES256", "--kid", "lists-1"])).unwrap();
    let other_path = dir.join("other-key.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let forged_path = dir.join("forged.jws");
    std::fs::write(&forged_path, text(&sign(&other_path, &list_path).stdout).trim()).unwrap();
    let out = eval(&forged_path);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("signature: "), "{}", text(&out.stderr));
    // What is signed is read as a list first: a bad one is not signed at all.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"jti": "one"}"#).unwrap();
    let out = sign(&key_path, &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("jti: invalid type: string"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn keygen_mint_eval_round_trip_with_a_log() {
    let dir = tempdir();
    for alg in ["EdDSA", "ES256"] {
        let out = run(&["keygen", "--alg", alg, "--kid", "k1"]);
        assert!(out.status.success());
        let keys: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        assert!(keys["jwks"]["keys"][0].get("d").is_none(), "public JWKS must not carry `d`");
        let key_path = dir.join(format!("{alg}.json"));
        std::fs::write(&key_path, keys.to_string()).unwrap();
        let policy = serde_json::json!({
            "issuers": [{"iss": "https://sts.local", "audiences": ["api"], "jwks": keys["jwks"], "algorithms": [alg]}],
            "routes": [{"id": "r", "methods": ["GET"], "path": "/x", "scopes": ["s"]}]
        });
        let policy_path = dir.join(format!("{alg}.policy.json"));
        std::fs::write(&policy_path, policy.to_string()).unwrap();
        let claims_path = dir.join("claims.json");
        std::fs::write(
            &claims_path,
            r#"{"iss":"https://sts.local","aud":"api","sub":"agent-1","scope":"s"}"#,
        )
        .unwrap();
        let out = run(&[
            "mint",
            "--key",
            key_path.to_str().unwrap(),
            "--claims",
            claims_path.to_str().unwrap(),
            "--now",
            "1700000000",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let token = text(&out.stdout).trim().to_owned();
        let request_path = dir.join("req.json");
        std::fs::write(&request_path, r#"{"method":"GET","path":"/x","now":1700000010}"#).unwrap();
        let log = dir.join("decisions.jsonl");
        let out = run(&[
            "eval",
            "--policy",
            policy_path.to_str().unwrap(),
            "--request",
            request_path.to_str().unwrap(),
            "--token",
            &token,
            "--short",
            "--log",
            log.to_str().unwrap(),
        ]);
        assert_eq!(text(&out.stdout).trim(), "allow 200", "{alg}: {}", text(&out.stderr));
        // Five minutes (the default --ttl) later the token has expired.
        let out = run(&[
            "eval",
            "--policy",
            policy_path.to_str().unwrap(),
            "--request",
            request_path.to_str().unwrap(),
            "--token",
            &token,
            "--short",
            "--now",
            "1700000400",
            "--log",
            log.to_str().unwrap(),
        ]);
        assert_eq!(text(&out.stdout).trim(), "deny 401 token_expired");
        let lines = std::fs::read_to_string(&log).unwrap();
        let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
        assert_eq!(last["decision"], "deny");
        assert!(!lines.contains(&token), "the log must not contain the token");
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let out = run(&["eval", "--policy", "nope.json", "--request", "examples/requests/no-token.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read `nope.json`"), "{}", text(&out.stderr));
    let out = run(&["keygen", "--alg", "HS256"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("never accepted"));
}

/// A fresh `$TMPDIR/agentguard-cli-<pid>-<nanos>`, removed when the guard is
/// dropped — at the end of the test, also when it fails (a panicking test
/// unwinds and drops it). `AGENTGUARD_KEEP_TMP=1` keeps it and prints its path.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("AGENTGUARD_KEEP_TMP").is_some_and(|v| v == "1") {
            eprintln!("AGENTGUARD_KEEP_TMP: kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

fn tempdir() -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "agentguard-cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

#[test]
fn exchange_mints_unique_short_lived_tokens() {
    let dir = tempdir();
    let idp: Value = serde_json::from_str(&run_ok(&["keygen", "--alg", "ES256", "--kid", "idp"])).unwrap();
    let edge: Value =
        serde_json::from_str(&run_ok(&["keygen", "--alg", "EdDSA", "--kid", "edge-1"])).unwrap();
    let policy = serde_json::json!({
        "issuers": [{"iss": "https://edge.local", "audiences": ["api"], "jwks": edge["jwks"], "algorithms": ["EdDSA"]}],
        "routes": [],
        "token_service": {"issuer": "https://edge.local", "signing_kid": "edge-1", "federation": [{
            "id": "ci", "issuer": {"iss": "https://idp.local", "audiences": ["https://edge.local"], "jwks": idp["jwks"], "algorithms": ["ES256"]},
            "scopes": ["a", "b"], "audiences": ["api"]}]}
    });
    let policy_path = dir.join("policy.json");
    std::fs::write(&policy_path, policy.to_string()).unwrap();
    let idp_path = dir.join("idp.json");
    std::fs::write(&idp_path, idp.to_string()).unwrap();
    let edge_path = dir.join("edge.json");
    std::fs::write(&edge_path, edge.to_string()).unwrap();
    let claims_path = dir.join("claims.json");
    std::fs::write(&claims_path, r#"{"iss":"https://idp.local","aud":"https://edge.local","sub":"job-1"}"#)
        .unwrap();
    let subject = run_ok(&[
        "mint",
        "--key",
        idp_path.to_str().unwrap(),
        "--claims",
        claims_path.to_str().unwrap(),
        "--typ",
        "JWT",
    ]);
    let mut jtis = std::collections::HashSet::new();
    for _ in 0..40 {
        let body = run_ok(&[
            "exchange",
            "--policy",
            policy_path.to_str().unwrap(),
            "--signing-keys",
            edge_path.to_str().unwrap(),
            "--subject-token",
            subject.trim(),
            "--scope",
            "a",
        ]);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["scope"], "a");
        let token = body["access_token"].as_str().unwrap();
        let claims: Value =
            serde_json::from_slice(&agentguard::b64::decode(token.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert!(jtis.insert(claims["jti"].as_str().unwrap().to_owned()), "jti repeated");
    }
    // Scope escalation: refused, exit 1, nothing minted.
    let out = run(&[
        "exchange",
        "--policy",
        policy_path.to_str().unwrap(),
        "--signing-keys",
        edge_path.to_str().unwrap(),
        "--subject-token",
        subject.trim(),
        "--scope",
        "a admin",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let body: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(body["error"], "invalid_scope");
}
