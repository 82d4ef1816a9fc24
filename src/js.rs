//! JavaScript frontend (feature `js`, target `wasm32-unknown-unknown`):
//! wasm-bindgen bindings over [`crate::api`] for Cloudflare Workers, Node and
//! browsers. Not built yet: this module only reserves the feature's place in
//! the layout.
