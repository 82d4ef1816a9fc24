//! Test-only package: see tests/binding.rs.
