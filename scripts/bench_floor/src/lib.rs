//! Bench only (never shipped): the floor under any meshwall module. `scripts/bench floor`
//! loads this module with a plugin configuration naming what each request does, one word per
//! ABI call, in this order: `read` (get the request header map), `metric` (increment a counter),
//! `shared` (read a shared-data key), `time` (get the clock), `property` (get
//! `source.address`), `set` (add a response header), `set12` (add twelve response headers, one call each), `map12`
//! (the same twelve in one get + one set of the whole map), `resp` (get the response header map). An
//! empty configuration does nothing: Continue from the request headers. With the `raw` feature
//! the module has no SDK and no response callbacks (only an empty request-header callback).
#![cfg(target_arch = "wasm32")]

#[cfg(feature = "raw")]
mod raw;
#[cfg(not(feature = "raw"))]
mod sdk;
