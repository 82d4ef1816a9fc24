//! spike
use proxy_wasm::traits::*;
use proxy_wasm::types::*;
proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}
struct Root;
impl Context for Root {}
impl RootContext for Root {}
#[cfg(test)]
mod tests {
    #[test]
    fn t() {
        assert_eq!(1, 1);
    }
}
