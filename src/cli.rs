//! The `agentguard` command-line tool (feature `cli`): check policies,
//! evaluate requests, run policy tests, and make keys and test tokens.
//!
//! Exit codes: 0 success (for `eval`: a decision was made, whatever it is),
//! 1 a check or test failed, 2 bad usage or unreadable input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::duration::Duration;
use crate::engine::Engine;
use crate::keys::Alg;
use crate::mint::{self, SigningKey};
use crate::request::RequestInput;

#[derive(Parser, Debug)]
#[command(name = "agentguard", version, about = "Machine-factor authentication for AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a policy; print every problem with its JSON path.
    Check {
        /// Policy JSON file.
        policy: PathBuf,
    },
    /// Decide one request and print the decision as JSON.
    Eval {
        /// Policy JSON file.
        #[arg(long)]
        policy: PathBuf,
        /// Request JSON file (the API's request object).
        #[arg(long)]
        request: PathBuf,
        /// Override the request's `now` (Unix seconds).
        #[arg(long)]
        now: Option<f64>,
        /// Send this token as `Authorization: Bearer <token>` (a file path or the token itself).
        #[arg(long)]
        token: Option<String>,
        /// Print only the outcome, status and reason codes.
        #[arg(long)]
        short: bool,
        /// Append the decision-log event (one JSON line) to this file.
        #[arg(long)]
        log: Option<PathBuf>,
        /// A list for the policy's `revocation_list`, as if just fetched
        /// from its `uri` (loaded at the request's `now`).
        #[arg(long)]
        revocation_list: Option<PathBuf>,
    },
    /// Run policy tests: request → expected decision cases.
    Test {
        /// Test file: `{"policy": "policy.json", "cases": [...]}`.
        file: PathBuf,
    },
    /// Summarise a decision log (JSON Lines): terminal summary, optional HTML report.
    Report {
        /// The decision log.
        log: PathBuf,
        /// Also write a self-contained HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Generate a signing key: prints the private JWK and the public JWKS.
    Keygen {
        /// `EdDSA` or `ES256`.
        #[arg(long, default_value = "EdDSA")]
        alg: String,
        /// Key id.
        #[arg(long, default_value = "key-1")]
        kid: String,
    },
    /// Mint an approval token for a high-risk action (what a human's approval service would issue).
    Approve {
        /// The approval service's private JWK.
        #[arg(long)]
        key: PathBuf,
        /// The action digest from the `approval_required` challenge.
        #[arg(long)]
        digest: String,
        /// The agent from the challenge.
        #[arg(long)]
        agent: String,
        /// `iss` (the policy's `approval.issuer`).
        #[arg(long)]
        iss: String,
        /// `aud` (one of the policy's `approval.audiences`).
        #[arg(long)]
        aud: String,
        /// Who approved (`sub`).
        #[arg(long, default_value = "user:approver")]
        sub: String,
        /// Issue time (Unix seconds); default now.
        #[arg(long)]
        now: Option<i64>,
        /// Lifetime.
        #[arg(long, default_value = "5m")]
        ttl: String,
    },
    /// Exchange a workload's token for an agent token, as `POST /token` would (RFC 8693).
    Exchange {
        /// Policy with a `token_service` section.
        #[arg(long)]
        policy: PathBuf,
        /// The edge's private signing keys: `{"keys": [private JWKs with kid]}` (or one JWK, or `keygen` output).
        #[arg(long)]
        signing_keys: PathBuf,
        /// The workload's token (a file path or the token itself).
        #[arg(long)]
        subject_token: String,
        /// Requested scope (space-separated).
        #[arg(long)]
        scope: Option<String>,
        /// Requested audience.
        #[arg(long)]
        audience: Option<String>,
        /// Time (Unix seconds); default now.
        #[arg(long)]
        now: Option<i64>,
    },
    /// Sign a test token with a private JWK.
    Mint {
        /// Private JWK file (from `keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Claims JSON file; `iat`, `exp` and `jti` are filled in when absent.
        #[arg(long)]
        claims: PathBuf,
        /// Issue time (Unix seconds); default now.
        #[arg(long)]
        now: Option<i64>,
        /// Lifetime when `exp` is absent.
        #[arg(long, default_value = "5m")]
        ttl: String,
        /// JWS `typ`.
        #[arg(long, default_value = "at+jwt")]
        typ: String,
    },
    /// Sign a revocation list for a policy whose `revocation_list` has `jwks`:
    /// prints the compact JWS to serve at `revocation_list.uri`.
    SignList {
        /// Private JWK file (from `keygen`); its public key goes in `revocation_list.jwks`.
        #[arg(long)]
        key: PathBuf,
        /// The list: JSON shaped like the policy's `revoked`
        /// (`{"jti": [...], "sub": [...], "agents": [...], "kid": [...]}`).
        #[arg(long)]
        list: PathBuf,
        /// Signing time (Unix seconds), the list's `iat`; default now.
        #[arg(long)]
        now: Option<i64>,
    },
}

/// Runs the CLI with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Check { policy } => {
            let text = read(&policy)?;
            match crate::Policy::from_json(&text).map_err(crate::PolicyErrors::from).and_then(|p| {
                let engine = Engine::new(&p)?;
                Ok((p, engine))
            }) {
                Ok((p, engine)) => {
                    let fetch = engine.jwks_uris().len();
                    println!(
                        "{}: ok: {} issuer(s), {} route(s){}{}",
                        policy.display(),
                        p.issuers.len(),
                        p.routes.len(),
                        if fetch > 0 {
                            format!(", {fetch} JWKS to fetch at run time")
                        } else {
                            String::new()
                        },
                        match engine.revocation_list() {
                            Some(list) if list.is_signed() => {
                                format!(", a signed revocation list to fetch from {}", list.uri)
                            }
                            Some(list) => format!(", a revocation list to fetch from {}", list.uri),
                            None => String::new(),
                        }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{}: {e}", policy.display());
                    }
                    eprintln!("{} problem(s) found", errors.0.len());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Eval { policy, request, now, token, short, log, revocation_list } => {
            let engine = load_engine(&policy)?;
            let mut input = crate::api::parse_request(&read(&request)?)?;
            if let Some(now) = now {
                input.now = now;
            }
            if let Some(list) = revocation_list {
                load_revocation_list(&engine, &list, input.now)?;
            }
            if let Some(token) = token {
                let token = if Path::new(&token).is_file() {
                    read(Path::new(&token))?.trim().to_owned()
                } else {
                    token
                };
                input.headers.insert(
                    "authorization".into(),
                    crate::request::HeaderValue::One(format!("Bearer {token}")),
                );
            }
            let decision = engine.decide_input(&input);
            if short {
                let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
                println!("{} {} {}", decision.decision.as_str(), decision.status, codes.join(","));
            } else {
                println!("{}", serde_json::to_string_pretty(&decision).map_err(|e| e.to_string())?);
            }
            if let Some(log) = log {
                use std::io::Write;
                let line = serde_json::to_string(&decision.event).map_err(|e| e.to_string())?;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .map_err(|e| format!("cannot open `{}`: {e}", log.display()))?;
                writeln!(f, "{line}").map_err(|e| format!("cannot write `{}`: {e}", log.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { file } => run_tests(&file),
        Command::Report { log, html } => {
            let report = crate::report::Report::from_jsonl(&read(&log)?);
            print!("{}", report.text());
            if let Some(path) = html {
                std::fs::write(&path, report.html())
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
                println!("\nHTML report: {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { alg, kid } => {
            let alg = Alg::parse(&alg)?;
            let key = loop {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
                // A P-256 draw can (with negligible probability) be out of range: draw again.
                if let Ok(key) = SigningKey::from_random(alg, &seed) {
                    break key;
                }
            };
            let out = serde_json::json!({
                "private": key.private_jwk(&kid),
                "jwks": {"keys": [key.public_jwk(&kid)]},
            });
            println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Approve { key, digest, agent, iss, aud, sub, now, ttl } => {
            let jwk: Value = parse_json(&key)?;
            let signing = SigningKey::from_jwk(&jwk)?;
            let now = match now {
                Some(n) => n,
                None => unix_now()?,
            };
            let ttl = Duration::parse(&ttl).map_err(|e| format!("--ttl: {e}"))?;
            let mut raw = [0u8; 16];
            getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
            let claims = serde_json::json!({
                "iss": iss, "aud": aud, "sub": sub, "agent": agent, "action_digest": digest,
                "iat": now, "exp": now + ttl.as_secs_i64(), "jti": crate::b64::encode(&raw),
            });
            let claims = claims.as_object().cloned().unwrap_or_default();
            println!(
                "{}",
                mint::sign(&signing, jwk.get("kid").and_then(Value::as_str), "approval+jwt", &claims)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Exchange { policy, signing_keys, subject_token, scope, audience, now } => {
            let engine = load_engine(&policy)?;
            let keys: Value = parse_json(&signing_keys)?;
            let keys = match (keys.get("keys"), keys.get("private")) {
                (Some(_), _) => keys,
                (None, Some(private)) => serde_json::json!({ "keys": [private] }),
                (None, None) => serde_json::json!({ "keys": [keys] }),
            };
            engine.set_signing_keys(&keys)?;
            let subject = if Path::new(&subject_token).is_file() {
                read(Path::new(&subject_token))?.trim().to_owned()
            } else {
                subject_token
            };
            let mut form = format!(
                "grant_type={}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&subject_token={subject}",
                "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
            );
            let encode = |v: &str| -> String {
                v.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            char::from(b).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect()
            };
            if let Some(scope) = scope {
                form.push_str(&format!("&scope={}", encode(&scope)));
            }
            if let Some(audience) = audience {
                form.push_str(&format!("&audience={}", encode(&audience)));
            }
            let now = match now {
                Some(n) => n,
                None => unix_now()?,
            };
            let request = crate::Request::builder("POST", "/token", now)
                .header("content-type", "application/x-www-form-urlencoded")
                .build()
                .map_err(|e| e.message)?;
            let mut raw = [0u8; 16];
            getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
            let jti = crate::b64::encode(&raw);
            let response = engine.exchange(crate::exchange::ExchangeContext {
                request: &request,
                body: &form,
                jti: &jti,
            });
            println!("{}", response.body);
            Ok(if response.status == 200 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Mint { key, claims, now, ttl, typ } => {
            let (signing, kid) = read_signing_key(&key)?;
            let kid = kid.as_deref();
            let mut claims: Map<String, Value> = match parse_json(&claims)? {
                Value::Object(m) => m,
                _ => return Err(format!("`{}`: expected a JSON object of claims", claims.display())),
            };
            let now = match now {
                Some(n) => n,
                None => unix_now()?,
            };
            let ttl = Duration::parse(&ttl).map_err(|e| format!("--ttl: {e}"))?;
            claims.entry("iat").or_insert(now.into());
            claims.entry("exp").or_insert((now + ttl.as_secs_i64()).into());
            if !claims.contains_key("jti") {
                let mut raw = [0u8; 16];
                getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
                claims.insert("jti".into(), crate::b64::encode(&raw).into());
            }
            println!("{}", mint::sign(&signing, kid, &typ, &claims));
            Ok(ExitCode::SUCCESS)
        }
        Command::SignList { key, list, now } => {
            let (signing, kid) = read_signing_key(&key)?;
            let kid = kid.as_deref();
            // Read as the engine reads a plain list, so what is signed is a valid list.
            let lists: crate::policy::RevocationLists = crate::json::from_str_with_path(&read(&list)?)
                .map_err(|e| format!("`{}`: {}: {}", list.display(), e.path, e.message))?;
            let mut payload = match serde_json::to_value(&lists).map_err(|e| e.to_string())? {
                Value::Object(m) => m,
                _ => return Err("a revocation list serialises as an object".into()),
            };
            payload.insert("iat".into(), now.map_or_else(unix_now, Ok)?.into());
            println!("{}", mint::sign(&signing, kid, crate::revocation::SIGNED_LIST_TYP, &payload));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A private JWK file as `keygen` writes it (`{"private": …, "jwks": …}`) or
/// a bare private JWK: the signing key and its `kid`.
fn read_signing_key(path: &Path) -> Result<(SigningKey, Option<String>), String> {
    let jwk: Value = parse_json(path)?;
    let jwk = jwk.get("private").cloned().unwrap_or(jwk);
    let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok((SigningKey::from_jwk(&jwk)?, kid))
}

/// A policy test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// Policy path, relative to the test file.
    policy: PathBuf,
    /// A list for the policy's `revocation_list`, relative to the test file:
    /// loaded before each case, at the case's `now` (as if just fetched).
    #[serde(default)]
    revocation_list: Option<PathBuf>,
    cases: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    request: RequestInput,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    reasons: Option<Vec<String>>,
}

fn run_tests(file: &Path) -> Result<ExitCode, String> {
    let text = read(file)?;
    let tests: TestFile = crate::json::from_str_with_path(&text).map_err(|e| {
        format!("`{}`: {}: {} at line {} column {}", file.display(), e.path, e.message, e.line, e.column)
    })?;
    let policy_path = file.parent().unwrap_or(Path::new(".")).join(&tests.policy);
    let engine = load_engine(&policy_path)?;
    let list = tests.revocation_list.as_ref().map(|l| file.parent().unwrap_or(Path::new(".")).join(l));
    let mut failed = 0usize;
    for case in &tests.cases {
        if let Some(list) = &list {
            load_revocation_list(&engine, list, case.request.now)?;
        }
        let d = engine.decide_input(&case.request);
        let codes: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
        let mut problems = Vec::new();
        if d.decision.as_str() != case.expect.decision {
            problems.push(format!("decision `{}`, expected `{}`", d.decision.as_str(), case.expect.decision));
        }
        if let Some(status) = case.expect.status.filter(|s| *s != d.status) {
            problems.push(format!("status {}, expected {status}", d.status));
        }
        if let Some(reasons) = case.expect.reasons.as_ref().filter(|r| **r != codes) {
            problems.push(format!("reasons [{}], expected [{}]", codes.join(", "), reasons.join(", ")));
        }
        if problems.is_empty() {
            println!("ok   {}", case.name);
        } else {
            failed += 1;
            let why = d.reasons.first().map(|r| r.message.as_str()).unwrap_or("allowed");
            println!("FAIL {}: {} ({why})", case.name, problems.join("; "));
        }
    }
    println!("{} passed, {} failed", tests.cases.len() - failed, failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The CLI's clock (the core never reads one).
fn unix_now() -> Result<i64, String> {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
    i64::try_from(d.as_secs()).map_err(|e| e.to_string())
}

/// Loads a revocation list file into the engine, at `now` (Unix seconds).
fn load_revocation_list(engine: &Engine, path: &Path, now: f64) -> Result<usize, String> {
    engine
        .set_listed_revocations(&read(path)?, (now * 1000.0) as i64)
        .map_err(|e| format!("`{}`: {e}", path.display()))
}

fn load_engine(path: &Path) -> Result<Engine, String> {
    Engine::from_json(&read(path)?).map_err(|errors| {
        let lines: Vec<String> = errors.0.iter().map(|e| format!("{}: {e}", path.display())).collect();
        lines.join("\n")
    })
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}

fn parse_json(path: &Path) -> Result<Value, String> {
    serde_json::from_str(&read(path)?).map_err(|e| format!("`{}`: {e}", path.display()))
}
