//! Stage 1: the request as the core sees it, normalised once.
//!
//! Hosts map their platform request (a Fetch `Request`, Envoy headers) into
//! [`RequestInput`], the JSON shape of the API, and the core turns it into a
//! [`Request`]: lowercase header names, a parsed source IP, a decoded
//! client-certificate thumbprint, and a path that is normalised exactly once
//! so that `/a/../admin` cannot dodge a rule written for `/admin`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::b64;
use crate::limits::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_PATH_BYTES};

/// A request as hosts describe it (the JSON API's request object).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// `https` (default) or `http`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// Host (authority) the request was sent to, e.g. `api.example.com`.
    #[serde(default)]
    pub host: String,
    /// Request target as sent: the path and an optional `?query`.
    pub path: String,
    /// Headers; a name may map to one value or a list of values.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// The client's IP address, as the host saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// SHA-256 of the client certificate's DER (64 hex digits or 43 base64url characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_sha256: Option<String>,
    /// SHA-256 of the request body, if the host read it (64 hex digits or 43 base64url characters).
    /// It goes into the action digest that approvals are bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// The request body as text, when the matched route has `approval_when`
    /// conditions on it (see `Engine::needs_body`). Its SHA-256 becomes
    /// `body_sha256` (a `body_sha256` given as well must match it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Current time, Unix seconds. The core has no clock: the host passes it.
    pub now: f64,
}

fn default_scheme() -> String {
    "https".into()
}

impl Default for RequestInput {
    /// `GET /` over `https` at time 0, with nothing else known.
    fn default() -> Self {
        RequestInput {
            method: "GET".into(),
            scheme: default_scheme(),
            host: String::new(),
            path: "/".into(),
            headers: BTreeMap::new(),
            source_ip: None,
            client_cert_sha256: None,
            body_sha256: None,
            body: None,
            now: 0.0,
        }
    }
}

/// A request as hosts describe it, borrowed: [`RequestInput`] for hosts that
/// already hold the request's text (the Envoy filter's header map), so that
/// nothing is copied twice. Header values may repeat a name.
#[derive(Debug, Clone, Default)]
pub struct RequestParts<'a> {
    /// HTTP method, e.g. `GET`.
    pub method: Cow<'a, str>,
    /// `https` or `http`.
    pub scheme: Cow<'a, str>,
    /// Host (authority) the request was sent to.
    pub host: Cow<'a, str>,
    /// Request target as sent: the path and an optional `?query`.
    pub path: Cow<'a, str>,
    /// Headers in arrival order; a repeated header appears once per value.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The client's IP address, as the host saw it.
    pub source_ip: Option<Cow<'a, str>>,
    /// SHA-256 of the client certificate's DER (hex or base64url).
    pub client_cert_sha256: Option<Cow<'a, str>>,
    /// SHA-256 of the request body, if the host read it (hex or base64url).
    pub body_sha256: Option<Cow<'a, str>>,
    /// The request body as text (see [`RequestInput::body`]).
    pub body: Option<Cow<'a, str>>,
    /// Current time, Unix seconds.
    pub now: f64,
}

/// The fields of the line form, in order, before the header lines.
const LINE_FIELDS: usize = 7;

impl<'a> RequestParts<'a> {
    /// Reads the line form of a request, the JS package's fast alternative
    /// to request JSON (nothing to escape, nothing to parse but line breaks):
    /// `method`, `scheme`, `host`, `path`, `source_ip`, `client_cert_sha256`
    /// and `body_sha256` on one line each (an empty line: not given), then a
    /// name line and a value line per header value, in arrival order. A host
    /// writes it only when no field contains a line break (header values
    /// cannot; anything else goes as JSON) and no optional field is empty.
    /// The body and the time come beside it. Borrowed, nothing copied; the
    /// result is normalised by [`Request::from_parts`] like any other. The
    /// error says what is wrong with the form (a host bug, not a caller's).
    pub fn from_lines(text: &'a str, body: Option<&'a str>, now: f64) -> Result<RequestParts<'a>, String> {
        let mut lines = text.split('\n');
        let mut fields = [""; LINE_FIELDS];
        for (i, field) in fields.iter_mut().enumerate() {
            *field =
                lines.next().ok_or_else(|| format!("request lines: {i} fields, expected {LINE_FIELDS}"))?;
        }
        let [method, scheme, host, path, source_ip, cert, body_sha256] = fields;
        let given = |field: &'a str| (!field.is_empty()).then_some(Cow::Borrowed(field));
        let mut headers = Vec::new();
        while let Some(name) = lines.next() {
            let value = lines.next().ok_or_else(|| {
                format!("request lines: header `{}` has no value line", crate::keys::clip(name))
            })?;
            headers.push((Cow::Borrowed(name), Cow::Borrowed(value)));
            if headers.len() > MAX_HEADERS {
                break; // normalise refuses the request for its header count
            }
        }
        Ok(RequestParts {
            method: Cow::Borrowed(method),
            scheme: Cow::Borrowed(scheme),
            host: Cow::Borrowed(host),
            path: Cow::Borrowed(path),
            headers,
            source_ip: given(source_ip),
            client_cert_sha256: given(cert),
            body_sha256: given(body_sha256),
            body: body.map(Cow::Borrowed),
            now,
        })
    }
}

/// One header value or several.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    /// A single value.
    One(String),
    /// Several values (the header was repeated).
    Many(Vec<String>),
}

/// By hand rather than `#[serde(untagged)]`, which buffers every value and
/// then tries each variant in turn: this is parsed for every header of every
/// request that crosses the JSON API.
impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Values;
        impl<'de> serde::de::Visitor<'de> for Values {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::One(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<HeaderValue, E> {
                Ok(HeaderValue::One(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderValue, A::Error> {
                let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(v) = seq.next_element::<String>()? {
                    values.push(v);
                }
                Ok(HeaderValue::Many(values))
            }
        }
        deserializer.deserialize_any(Values)
    }
}

/// A normalised request. Build one with [`Request::from_input`],
/// [`Request::from_parts`] or [`Request::builder`].
///
/// It borrows from what it was built from wherever normalising changes
/// nothing (an upper-case method, lower-case header names, a path with
/// nothing to decode: the usual request), so building one copies little;
/// [`Request::into_owned`] detaches it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Upper-case method.
    pub method: Cow<'a, str>,
    /// `https` or `http`.
    pub scheme: Cow<'a, str>,
    /// Lower-case host, without a default port.
    pub host: Cow<'a, str>,
    /// Normalised path (no query).
    pub path: Cow<'a, str>,
    /// The raw query (without `?`), if any.
    pub query: Option<Cow<'a, str>>,
    /// Headers with lower-case names, in arrival order; repeated headers stay separate.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Source IP, if the host knows it.
    pub source_ip: Option<IpAddr>,
    /// Client-certificate SHA-256, if the connection had one.
    pub client_cert_sha256: Option<[u8; 32]>,
    /// Body SHA-256, if the host read the body.
    pub body_sha256: Option<[u8; 32]>,
    /// The body as text, when the host gave it (for `approval_when`).
    pub body: Option<Cow<'a, str>>,
    /// Current time in milliseconds since the Unix epoch.
    pub now_ms: i64,
}

/// Why a request could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// Which field (`path`, `headers`, …).
    pub field: &'static str,
    /// What is wrong, lowercase.
    pub message: String,
}

impl Request<'_> {
    /// Starts a request for `method` and `target` at time `now` (Unix seconds).
    pub fn builder(method: &str, target: &str, now: i64) -> RequestBuilder {
        RequestBuilder {
            input: RequestInput {
                method: method.into(),
                scheme: default_scheme(),
                host: String::new(),
                path: target.into(),
                headers: BTreeMap::new(),
                source_ip: None,
                client_cert_sha256: None,
                body_sha256: None,
                body: None,
                now: now as f64,
            },
            extra: Vec::new(),
        }
    }

    /// Validates and normalises a host-described request.
    pub fn from_input(input: &RequestInput) -> Result<Request<'_>, RequestError> {
        let headers = input.headers.iter().flat_map(|(name, value)| {
            let values = match value {
                HeaderValue::One(v) => std::slice::from_ref(v),
                HeaderValue::Many(vs) => vs.as_slice(),
            };
            values.iter().map(move |v| (name.as_str(), v.as_str()))
        });
        Request::normalise(
            RequestFields {
                method: &input.method,
                scheme: &input.scheme,
                host: &input.host,
                path: &input.path,
                source_ip: input.source_ip.as_deref(),
                client_cert_sha256: input.client_cert_sha256.as_deref(),
                body_sha256: input.body_sha256.as_deref(),
                body: input.body.as_deref(),
                now: input.now,
            },
            headers,
        )
    }

    /// [`Request::from_input`] for a borrowed [`RequestParts`].
    pub fn from_parts<'p>(parts: &'p RequestParts<'_>) -> Result<Request<'p>, RequestError> {
        Request::normalise(
            RequestFields {
                method: &parts.method,
                scheme: &parts.scheme,
                host: &parts.host,
                path: &parts.path,
                source_ip: parts.source_ip.as_deref(),
                client_cert_sha256: parts.client_cert_sha256.as_deref(),
                body_sha256: parts.body_sha256.as_deref(),
                body: parts.body.as_deref(),
                now: parts.now,
            },
            parts.headers.iter().map(|(n, v)| (&**n, &**v)),
        )
    }

    fn normalise<'h>(
        input: RequestFields<'h>,
        input_headers: impl Iterator<Item = (&'h str, &'h str)>,
    ) -> Result<Request<'h>, RequestError> {
        let err = |field, message: String| RequestError { field, message };
        let method = upper(input.method);
        if method.is_empty() || method.len() > 32 || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(err(
                "method",
                format!("expected an HTTP method like `GET`, found `{}`", crate::keys::clip(input.method)),
            ));
        }
        let scheme = lower(input.scheme);
        if scheme != "https" && scheme != "http" {
            return Err(err(
                "scheme",
                format!("expected `https` or `http`, found `{}`", crate::keys::clip(input.scheme)),
            ));
        }
        let host = normalise_host(input.host, &scheme).map_err(|m| err("host", m))?;
        let (path, query) = normalise_target(input.path).map_err(|m| err("path", m))?;
        let mut headers = Vec::with_capacity(input_headers.size_hint().0);
        for (name, value) in input_headers {
            push_header(&mut headers, name, value).map_err(|m| err("headers", m))?;
        }
        let source_ip = match input.source_ip {
            None => None,
            Some("") => None,
            Some(ip) => Some(parse_ip(ip).ok_or_else(|| {
                err(
                    "source_ip",
                    format!("expected an IPv4 or IPv6 address, found `{}`", crate::keys::clip(ip)),
                )
            })?),
        };
        let client_cert_sha256 = match input.client_cert_sha256 {
            None => None,
            Some("") => None,
            Some(t) => Some(parse_thumbprint(t).map_err(|m| err("client_cert_sha256", m))?),
        };
        let mut body_sha256 = match input.body_sha256 {
            None => None,
            Some("") => None,
            Some(t) => Some(parse_thumbprint(t).map_err(|m| err("body_sha256", m))?),
        };
        if let Some(body) = input.body {
            use sha2::{Digest, Sha256};
            let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
            if body_sha256.is_some_and(|given| given != digest) {
                return Err(err("body_sha256", "does not match the SHA-256 of `body`".into()));
            }
            body_sha256 = Some(digest);
        }
        if !input.now.is_finite() || input.now < 0.0 || input.now > 253_402_300_799.0 {
            return Err(err("now", "expected Unix seconds between 0 and year 9999".into()));
        }
        // In range by the check above, so the cast cannot saturate.
        let now_ms = (input.now * 1000.0).floor() as i64;
        Ok(Request {
            method,
            scheme,
            host,
            path,
            query,
            headers,
            source_ip,
            client_cert_sha256,
            body_sha256,
            body: input.body.map(Cow::Borrowed),
            now_ms,
        })
    }

    /// The request, owning everything it borrowed.
    pub fn into_owned(self) -> Request<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Request {
            method: own(self.method),
            scheme: own(self.scheme),
            host: own(self.host),
            path: own(self.path),
            query: self.query.map(own),
            headers: self.headers.into_iter().map(|(n, v)| (own(n), own(v))).collect(),
            source_ip: self.source_ip,
            client_cert_sha256: self.client_cert_sha256,
            body_sha256: self.body_sha256,
            body: self.body.map(own),
            now_ms: self.now_ms,
        }
    }

    /// Current time in whole Unix seconds.
    pub fn now(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }

    /// All values of header `name` (give it in lower case).
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| &**v)
    }
}

/// The scalar fields [`Request::from_input`] and [`Request::from_parts`] share.
struct RequestFields<'a> {
    method: &'a str,
    scheme: &'a str,
    host: &'a str,
    path: &'a str,
    source_ip: Option<&'a str>,
    client_cert_sha256: Option<&'a str>,
    body_sha256: Option<&'a str>,
    body: Option<&'a str>,
    now: f64,
}

/// Builds a [`Request`] in Rust code and tests.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    input: RequestInput,
    extra: Vec<(String, String)>,
}

impl RequestBuilder {
    /// Sets the host.
    pub fn host(mut self, host: &str) -> Self {
        self.input.host = host.into();
        self
    }
    /// Adds a header (repeat to send it twice).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }
    /// Sets the source IP.
    pub fn source_ip(mut self, ip: &str) -> Self {
        self.input.source_ip = Some(ip.into());
        self
    }
    /// Sets the body's SHA-256 (hex or base64url).
    pub fn body_sha256(mut self, digest: &str) -> Self {
        self.input.body_sha256 = Some(digest.into());
        self
    }
    /// Sets the body text (for `approval_when`; its SHA-256 becomes `body_sha256`).
    pub fn body(mut self, text: &str) -> Self {
        self.input.body = Some(text.into());
        self
    }
    /// Sets the client-certificate thumbprint (hex or base64url).
    pub fn client_cert_sha256(mut self, thumbprint: &str) -> Self {
        self.input.client_cert_sha256 = Some(thumbprint.into());
        self
    }
    /// Normalises the request.
    pub fn build(self) -> Result<Request<'static>, RequestError> {
        let mut req = Request::from_input(&self.input)?;
        for (name, value) in &self.extra {
            push_header(&mut req.headers, name, value)
                .map_err(|message| RequestError { field: "headers", message })?;
        }
        Ok(req.into_owned())
    }
}

fn push_header<'a>(
    headers: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
    name: &'a str,
    value: &'a str,
) -> Result<(), String> {
    if headers.len() >= MAX_HEADERS {
        return Err(format!("more than {MAX_HEADERS} headers"));
    }
    if name.is_empty() || !name.bytes().all(is_token_char) {
        return Err(format!("`{}` is not a valid header name", crate::keys::clip(name)));
    }
    if value.len() > MAX_HEADER_BYTES {
        return Err(format!("header `{}` is longer than {MAX_HEADER_BYTES} bytes", crate::keys::clip(name)));
    }
    headers.push((lower(name), Cow::Borrowed(value)));
    Ok(())
}

/// `text` in ASCII upper case, borrowed when it already is.
fn upper(text: &str) -> Cow<'_, str> {
    match text.bytes().any(|b| b.is_ascii_lowercase()) {
        true => Cow::Owned(text.to_ascii_uppercase()),
        false => Cow::Borrowed(text),
    }
}

/// `text` in ASCII lower case, borrowed when it already is.
fn lower(text: &str) -> Cow<'_, str> {
    match text.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(text.to_ascii_lowercase()),
        false => Cow::Borrowed(text),
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    let ip: IpAddr = text.parse().ok()?;
    // An IPv4-mapped IPv6 address is the IPv4 address (so `10.0.0.0/8` rules apply).
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    })
}

fn parse_thumbprint(text: &str) -> Result<[u8; 32], String> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| text.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or("invalid hex")?
    } else {
        b64::decode(text)?
    };
    bytes
        .try_into()
        .map_err(|_| "expected a SHA-256 thumbprint: 64 hex digits or 43 base64url characters".into())
}

fn normalise_host<'a>(host: &'a str, scheme: &str) -> Result<Cow<'a, str>, String> {
    let host = lower(host);
    if host.len() > 255 || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)) {
        return Err(format!("`{}` is not a valid host", crate::keys::clip(&host)));
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    Ok(match host {
        Cow::Borrowed(h) => Cow::Borrowed(h.strip_suffix(default_port).unwrap_or(h)),
        Cow::Owned(mut h) => {
            if h.ends_with(default_port) {
                h.truncate(h.len() - default_port.len());
            }
            Cow::Owned(h)
        }
    })
}

/// Normalises a request target into (path, query).
///
/// - the path must start with `/`; a fragment is refused (clients never send one);
/// - percent-encoded unreserved characters are decoded (`%7E` → `~`), other
///   escapes are kept with upper-case hex;
/// - an encoded `/` or `\` (`%2F`, `%5C`), a literal `\`, an encoded dot
///   segment (`%2E%2E`), control characters and bad escapes are refused:
///   servers disagree on them, so a guess could route around a rule;
/// - `.` and `..` segments are resolved (RFC 3986 §5.2.4) and repeated
///   slashes collapse to one.
pub fn normalise_target(target: &str) -> Result<(Cow<'_, str>, Option<Cow<'_, str>>), String> {
    if target.len() > MAX_PATH_BYTES {
        return Err(format!("request target is longer than {MAX_PATH_BYTES} bytes"));
    }
    if target.contains('#') {
        return Err("request target must not contain a fragment (`#`)".into());
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(Cow::Borrowed(q))),
        None => (target, None),
    };
    if !raw_path.starts_with('/') {
        return Err(format!("expected a path starting with `/`, found `{}`", crate::keys::clip(raw_path)));
    }
    let path =
        if is_normal_path(raw_path) { Cow::Borrowed(raw_path) } else { Cow::Owned(resolve_path(raw_path)?) };
    Ok((path, query))
}

/// Percent-decodes what may be decoded and resolves dot segments, segment
/// by segment (see [`normalise_target`]).
fn resolve_path(raw_path: &str) -> Result<String, String> {
    let mut segments: Vec<String> = Vec::new();
    let ends_with_slash = raw_path.ends_with('/') || raw_path.ends_with("/.") || raw_path.ends_with("/..");
    for raw in raw_path.split('/').skip(1) {
        if raw.is_empty() {
            continue;
        }
        let (segment, had_encoded_dot) = decode_segment(raw)?;
        match segment.as_str() {
            "." | ".." if had_encoded_dot => {
                return Err("encoded dot segment (`%2E`) in path".into());
            }
            "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut path = String::with_capacity(raw_path.len());
    for s in &segments {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || (ends_with_slash && !segments.is_empty()) {
        path.push('/');
    }
    Ok(path)
}

/// Whether a path (starting with `/`) is already what [`normalise_target`]
/// makes of it: nothing to decode (no `%`), no character it refuses, no
/// empty segment (`//`) and no segment starting with a dot (which covers `.`
/// and `..`). Most request paths are, and then cost one scan instead of a
/// string per segment.
fn is_normal_path(path: &str) -> bool {
    let mut previous = 0;
    path.bytes().all(|b| {
        let after_slash = previous == b'/' && (b == b'/' || b == b'.');
        previous = b;
        (0x21..0x7f).contains(&b) && b != b'%' && b != b'\\' && !after_slash
    })
}

fn decode_segment(raw: &str) -> Result<(String, bool), String> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut had_encoded_dot = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let value = hex
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("invalid percent-encoding in path")?;
            match value {
                b'/' => return Err("encoded `/` (`%2F`) in path".into()),
                b'\\' => return Err("encoded `\\` (`%5C`) in path".into()),
                b'.' => {
                    had_encoded_dot = true;
                    out.push('.');
                }
                v if v.is_ascii_alphanumeric() || v == b'-' || v == b'_' || v == b'~' => {
                    out.push(char::from(v))
                }
                v if v < 0x20 || v == 0x7f => return Err("encoded control character in path".into()),
                v => {
                    out.push('%');
                    out.push_str(&format!("{v:02X}"));
                }
            }
            i += 3;
        } else {
            if b == b'\\' {
                return Err("`\\` in path".into());
            }
            if !(0x21..0x7f).contains(&b) {
                return Err("control, space or non-ASCII character in path (percent-encode it)".into());
            }
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok((out, had_encoded_dot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(t: &str) -> Result<String, String> {
        normalise_target(t).map(|(p, _)| p.into_owned())
    }

    /// A request that needs no normalising is borrowed, not copied; one that
    /// does is normalised into owned text, the same as before.
    #[test]
    fn a_normal_request_borrows_and_the_others_are_normalised() {
        let parts =
            |method: &'static str, host: &'static str, path: &'static str, name: &'static str| RequestParts {
                method: Cow::Borrowed(method),
                scheme: Cow::Borrowed("https"),
                host: Cow::Borrowed(host),
                path: Cow::Borrowed(path),
                headers: vec![(Cow::Borrowed(name), Cow::Borrowed("Bearer x"))],
                source_ip: None,
                client_cert_sha256: None,
                body_sha256: None,
                body: None,
                now: 1.0,
            };
        let borrowed = |c: &Cow<'_, str>| matches!(c, Cow::Borrowed(_));
        let usual = parts("GET", "api.test", "/v1/a?x=1", "authorization");
        let r = Request::from_parts(&usual).unwrap();
        assert!(borrowed(&r.method) && borrowed(&r.scheme) && borrowed(&r.host) && borrowed(&r.path));
        assert!(
            r.query.as_ref().is_some_and(borrowed) && borrowed(&r.headers[0].0) && borrowed(&r.headers[0].1)
        );
        let odd = parts("get", "API.test:443", "/v1/./a/", "Authorization");
        let r = Request::from_parts(&odd).unwrap();
        assert_eq!(
            (&*r.method, &*r.host, &*r.path, &*r.headers[0].0),
            ("GET", "api.test", "/v1/a/", "authorization")
        );
        assert!(
            !borrowed(&r.method) && !borrowed(&r.host) && !borrowed(&r.path) && !borrowed(&r.headers[0].0)
        );
        // A borrowed host keeps its default port off too, and an owned request is equal.
        let port = parts("GET", "api.test:443", "/", "a");
        let r = Request::from_parts(&port).unwrap();
        assert_eq!((&*r.host, borrowed(&r.host)), ("api.test", true));
        let owned = r.clone().into_owned();
        assert_eq!((owned.host, owned.path, owned.headers), (r.host, r.path, r.headers));
    }

    /// A path the fast path passes as normal is exactly what resolving it
    /// segment by segment gives: a grid of paths built from the pieces that
    /// matter (slashes, dots, `%`, `\\`, spaces, letters), and random ones.
    #[test]
    fn normal_paths_are_what_resolving_gives() {
        let pieces = ["/", "a", ".", "..", "%2e", "%41", "%2F", "\\", " ", "~", ".b", "b."];
        let mut paths = Vec::new();
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    paths.push(format!("/{a}{b}{c}"));
                    paths.push(format!("/{a}/{b}/{c}/"));
                }
            }
        }
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..20_000 {
            let mut path = String::from("/");
            for _ in 0..next() % 12 {
                path.push_str(pieces[next() % pieces.len()]);
            }
            paths.push(path);
        }
        let mut fast = 0;
        for path in &paths {
            if is_normal_path(path) {
                fast += 1;
                assert_eq!(resolve_path(path).as_deref(), Ok(path.as_str()), "{path}");
            }
        }
        assert!(fast > 1000 && fast < paths.len() / 2, "{fast} of {}", paths.len());
    }

    #[test]
    fn line_form_reads_fields_and_headers_in_order() {
        let text =
            "get\nhttp\nAPI.test\n/v1/x?q=1\n10.0.0.1\n\n\nauthorization\nBearer a.b.c\nx-a\n1\nx-a\n2";
        let parts = RequestParts::from_lines(text, Some("{}"), 1.5).unwrap();
        assert_eq!(
            (&*parts.method, &*parts.scheme, &*parts.host, &*parts.path),
            ("get", "http", "API.test", "/v1/x?q=1")
        );
        assert_eq!(parts.source_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!((parts.client_cert_sha256.is_none(), parts.body_sha256.is_none()), (true, true));
        let headers: Vec<(&str, &str)> = parts.headers.iter().map(|(n, v)| (&**n, &**v)).collect();
        assert_eq!(headers, [("authorization", "Bearer a.b.c"), ("x-a", "1"), ("x-a", "2")]);
        assert_eq!((parts.body.as_deref(), parts.now), (Some("{}"), 1.5));
        // Normalised like any other request.
        let request = Request::from_parts(&parts).unwrap();
        assert_eq!((&*request.method, &*request.host, &*request.path), ("GET", "api.test", "/v1/x"));
        assert_eq!(request.query.as_deref(), Some("q=1"));
        // No headers at all.
        assert!(RequestParts::from_lines("GET\nhttps\nh\n/\n\n\n", None, 0.0).unwrap().headers.is_empty());
    }

    #[test]
    fn line_form_errors_say_what_is_missing() {
        let e = RequestParts::from_lines("GET\nhttps", None, 0.0).unwrap_err();
        assert_eq!(e, "request lines: 2 fields, expected 7");
        let e = RequestParts::from_lines("GET\nhttps\nh\n/\n\n\n\nx-a", None, 0.0).unwrap_err();
        assert_eq!(e, "request lines: header `x-a` has no value line");
        // Past the header limit the rest is not read: normalise refuses the request.
        let mut text = String::from("GET\nhttps\nh\n/\n\n\n");
        for i in 0..MAX_HEADERS + 10 {
            text.push_str(&format!("\nx-{i}\nv"));
        }
        text.push_str("\nx-dangling");
        let parts = RequestParts::from_lines(&text, None, 0.0).unwrap();
        assert_eq!(parts.headers.len(), MAX_HEADERS + 1);
        assert_eq!(
            Request::from_parts(&parts).unwrap_err().message,
            format!("more than {MAX_HEADERS} headers")
        );
    }

    #[test]
    fn resolves_dot_segments_and_slashes() {
        assert_eq!(norm("/a/../admin").unwrap(), "/admin");
        assert_eq!(norm("/a/./b").unwrap(), "/a/b");
        assert_eq!(norm("/../../etc").unwrap(), "/etc");
        assert_eq!(norm("//v1///contacts//").unwrap(), "/v1/contacts/");
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/..").unwrap(), "/");
    }

    #[test]
    fn decodes_unreserved_only() {
        assert_eq!(norm("/v1/%63ontacts/%7e").unwrap(), "/v1/contacts/~");
        assert_eq!(norm("/a%20b/%c3%a9").unwrap(), "/a%20b/%C3%A9");
    }

    #[test]
    fn refuses_ambiguous_encodings() {
        for (t, want) in [
            ("/a%2Fadmin", "%2F"),
            ("/a%2fadmin", "%2F"),
            ("/a/%2e%2e/admin", "dot segment"),
            ("/a/.%2E/admin", "dot segment"),
            ("/a%5Cb", "%5C"),
            ("/a\\b", "`\\`"),
            ("/a%zz", "percent-encoding"),
            ("/a%2", "percent-encoding"),
            ("/a b", "space"),
            ("/a%00", "control"),
            ("a/b", "starting with `/`"),
            ("/a#frag", "fragment"),
        ] {
            let err = norm(t).unwrap_err();
            assert!(err.contains(want), "{t}: {err}");
        }
        // Dots that are not a whole segment are just characters.
        assert_eq!(norm("/a/%2e%2ex").unwrap(), "/a/..x");
    }

    #[test]
    fn splits_query_without_touching_it() {
        let (p, q) = normalise_target("/v1/x?a=%2F&b=..").unwrap();
        assert_eq!(p, "/v1/x");
        assert_eq!(q.as_deref(), Some("a=%2F&b=.."));
    }

    #[test]
    fn thumbprint_accepts_hex_and_base64url() {
        let hex = "a".repeat(64);
        let from_hex = parse_thumbprint(&hex).unwrap();
        assert_eq!(from_hex, [0xaa; 32]);
        assert_eq!(parse_thumbprint(&b64::encode(&[0xaa; 32])).unwrap(), from_hex);
        assert!(parse_thumbprint("abcd").is_err());
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert_eq!(parse_ip("::ffff:10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(parse_ip("[2001:db8::1]"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_ip("nope"), None);
    }

    #[test]
    fn request_fields_are_checked() {
        let bad_method = Request::builder("G ET", "/", 0).build().unwrap_err();
        assert_eq!(bad_method.field, "method");
        let bad_header = Request::builder("GET", "/", 0).header("bad name", "x").build().unwrap_err();
        assert_eq!(bad_header.field, "headers");
        let ok = Request::builder("get", "/x", 5)
            .host("API.example.com:443")
            .header("Authorization", "x")
            .build()
            .unwrap();
        assert_eq!(ok.method, "GET");
        assert_eq!(ok.host, "api.example.com");
        assert_eq!(ok.header_values("authorization").collect::<Vec<_>>(), ["x"]);
    }
}
