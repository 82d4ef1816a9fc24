//! Component-model frontend (feature `component`, target `wasm32-wasip2`):
//! the WIT world in `wit/` over [`crate::api`]. Not built yet: this module
//! only reserves the feature's place in the layout.
