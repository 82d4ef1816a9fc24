//! Envoy frontend (feature `envoy`, target `wasm32-wasip1`): a proxy-wasm
//! HTTP filter over [`crate::engine::Engine`]. Not built yet: this module
//! only reserves the feature's place in the layout.
