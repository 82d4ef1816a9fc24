//! The floor under any proxy-wasm HTTP filter in this Envoy (V8, proxy-wasm
//! Rust SDK 0.2.5): what Envoy spends on a Wasm filter before the filter
//! decides anything. The plugin configuration picks what it does per request:
//!
//! - `empty`: `on_http_request_headers` returns `Continue`. The cost of the
//!   VM crossing, the HTTP context's creation and deletion, and nothing else.
//! - `identity`: what any identity filter must do at least, as agentguard's
//!   cached allow does with "3 identity headers": read the request headers (one
//!   `get_map` call), find `authorization` (401 without it), read the host
//!   clock, then add three identity headers (three calls).
//!
//! Not a filter anyone should deploy: it checks nothing.
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

#[derive(Clone, Copy)]
enum Mode {
    Empty,
    Identity,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Root { mode: Mode::Empty }));
}}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.mode = match config.as_slice() {
            b"empty" => Mode::Empty,
            b"identity" => Mode::Identity,
            _ => return false,
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { mode: self.mode }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    mode: Mode,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if let Mode::Empty = self.mode {
            return Action::Continue;
        }
        let headers = self.get_http_request_headers_bytes();
        let Some((_, token)) = headers.iter().find(|(name, _)| name == "authorization") else {
            self.send_http_response(401, vec![("www-authenticate", "Bearer")], None);
            return Action::Pause;
        };
        let _ = self.get_current_time();
        self.add_http_request_header_bytes("x-agentguard-subject", b"agent-7");
        self.add_http_request_header_bytes("x-agentguard-client-id", b"crm-agent");
        self.add_http_request_header_bytes("x-agentguard-scopes", &token[..token.len().min(8)]);
        Action::Continue
    }
}
