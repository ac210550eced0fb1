//! Load generation against a running Orbit stack. The full benchmark harness is tracked in
//! its own issue; this crate starts with the end-to-end throughput script (`orbit-load`).
