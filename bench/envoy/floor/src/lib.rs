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
//! - `busy:<n>`: `identity`, plus `n` rounds of arithmetic in one small loop:
//!   time spent in the Wasm VM that touches almost no code and no memory.
//! - `code:<n>`: `identity`, plus one call to each of `n` (≤ 400) distinct
//!   functions of ~0.5 KiB of Wasm each: time in the VM spread over as much
//!   code as a real decision runs through.
//!
//! The last two tell apart what a filter's own time costs Envoy from what its
//! footprint costs (docs/envoy.md, "Where the time goes").
//!
//! Not a filter anyone should deploy: it checks nothing.
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

#[derive(Clone, Copy)]
enum Mode {
    Empty,
    Identity,
    Busy(u32),
    Code(usize),
}

/// One of [`CODE`]'s functions: 24 rounds of multiply-xor-rotate whose
/// constants come from `K`, so every instance is code of its own.
#[inline(never)]
fn mix<const K: u64>(mut x: u64) -> u64 {
    macro_rules! round {
        ($($r:literal)*) => {$(
            x = (x ^ (x >> (7 + $r % 13)))
                .wrapping_mul(K.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add($r * 0x0001_0000_0001_b3))
                .rotate_left(1 + $r);
        )*};
    }
    round!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23);
    x
}

#[rustfmt::skip]
macro_rules! ten {
    ($t:literal) => {
        [
            mix::<{ $t * 10 }>, mix::<{ $t * 10 + 1 }>, mix::<{ $t * 10 + 2 }>, mix::<{ $t * 10 + 3 }>,
            mix::<{ $t * 10 + 4 }>, mix::<{ $t * 10 + 5 }>, mix::<{ $t * 10 + 6 }>, mix::<{ $t * 10 + 7 }>,
            mix::<{ $t * 10 + 8 }>, mix::<{ $t * 10 + 9 }>,
        ]
    };
}

type Mix = fn(u64) -> u64;

/// 400 distinct functions for `code:<n>`.
#[rustfmt::skip]
static CODE: [[Mix; 10]; 40] = [
    ten!(0), ten!(1), ten!(2), ten!(3), ten!(4), ten!(5), ten!(6), ten!(7), ten!(8), ten!(9),
    ten!(10), ten!(11), ten!(12), ten!(13), ten!(14), ten!(15), ten!(16), ten!(17), ten!(18), ten!(19),
    ten!(20), ten!(21), ten!(22), ten!(23), ten!(24), ten!(25), ten!(26), ten!(27), ten!(28), ten!(29),
    ten!(30), ten!(31), ten!(32), ten!(33), ten!(34), ten!(35), ten!(36), ten!(37), ten!(38), ten!(39),
];

/// The extra work of `busy` and `code`, after the identity floor's host calls.
fn burn(mode: Mode) {
    match mode {
        Mode::Busy(rounds) => {
            let mut x = std::hint::black_box(1u64);
            for i in 0..rounds {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(u64::from(i));
            }
            std::hint::black_box(x);
        }
        Mode::Code(n) => {
            let mut x = std::hint::black_box(1u64);
            for f in CODE.iter().flatten().take(n) {
                x = std::hint::black_box(f)(x);
            }
            std::hint::black_box(x);
        }
        Mode::Empty | Mode::Identity => {}
    }
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
        let number = |text: &[u8]| std::str::from_utf8(text).ok()?.parse().ok();
        self.mode = match config.as_slice() {
            b"empty" => Mode::Empty,
            b"identity" => Mode::Identity,
            [b'b', b'u', b's', b'y', b':', n @ ..] => match number(n) {
                Some(n) => Mode::Busy(n),
                None => return false,
            },
            [b'c', b'o', b'd', b'e', b':', n @ ..] => match number(n) {
                Some(n) if n <= 400 => Mode::Code(n as usize),
                _ => return false,
            },
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
        burn(self.mode);
        Action::Continue
    }
}
