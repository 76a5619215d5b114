//! A proxy-wasm module that fails on demand, to prove what Envoy does when a Wasm VM fails
//! (tests/test_fail_closed.py). Test-only: never shipped, never part of the suite.
//!
//! The plugin configuration picks a start-up failure:
//! - `fail-configure`: `on_configure` returns false (every VM: Envoy refuses the config);
//! - `fail-on-workers`: the first VM (Envoy's main thread, which checks the config) configures,
//!   every later one (the worker threads' copies) returns false, so the config is accepted but
//!   no worker has a running plugin;
//! - `trap-on-workers`: the same, but the workers' copies trap in `on_configure`;
//! - anything else: starts normally.
//!
//! A started plugin adds `x-fault-module: passed` to each request (so the upstream can tell a
//! filtered request from an unfiltered one) and fails on these paths:
//! - `/trap…`: executes `unreachable` (a runtime trap);
//! - `/oom…`: allocates untouched 64 MiB blocks until the allocator fails (out of memory, which
//!   aborts: a trap); untouched pages cost no RSS;
//! - `/deny…`: answers 403 itself (a working filter's local reply).

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}

const STARTED_KEY: &str = "meshwall.fault.first_vm_configured";

struct Root;

impl Context for Root {}

impl Root {
    /// True in the first VM to configure (Envoy's main thread), false in every later copy.
    fn first_vm(&self) -> bool {
        match self.get_shared_data(STARTED_KEY) {
            (Some(_), _) => false,
            (None, _) => {
                let _ = self.set_shared_data(STARTED_KEY, Some(b"1"), None);
                true
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        match cfg.as_slice() {
            b"fail-configure" => {
                log::error!("meshwall.fault: on_configure refuses (fail-configure)");
                false
            }
            b"fail-on-workers" => {
                let first = self.first_vm();
                if !first {
                    log::error!(
                        "meshwall.fault: on_configure refuses on a worker (fail-on-workers)"
                    );
                }
                first
            }
            b"trap-on-workers" => {
                if !self.first_vm() {
                    log::error!("meshwall.fault: trapping in on_configure on a worker");
                    core::arch::wasm32::unreachable();
                }
                true
            }
            _ => true,
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http;

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path.starts_with("/trap") {
            log::error!("meshwall.fault: trapping on {path}");
            core::arch::wasm32::unreachable();
        }
        if path.starts_with("/oom") {
            log::error!("meshwall.fault: allocating until out of memory on {path}");
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            loop {
                // One byte written per block, so the allocation cannot be optimised away.
                let mut block = Vec::with_capacity(64 << 20);
                block.push(1u8);
                blocks.push(std::hint::black_box(block));
            }
        }
        if path.starts_with("/deny") {
            self.send_http_response(403, vec![("x-fault-module", "denied")], Some(b"denied\n"));
            return Action::Pause;
        }
        self.set_http_request_header("x-fault-module", Some("passed"));
        Action::Continue
    }
}
