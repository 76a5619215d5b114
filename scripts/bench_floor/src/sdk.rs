//! The SDK-based floor: the same dispatcher and exports meshwall's modules use.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;

#[derive(Default, Clone, Copy)]
struct Steps {
    read: bool,
    metric: Option<u32>,
    shared: bool,
    time: bool,
    property: bool,
    set: bool,
    set12: bool,
    map12: bool,
    resp: bool,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root(Rc::new(Steps::default()))) });
}}

struct Root(Rc<Steps>);

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let cfg = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut s = Steps::default();
        for word in String::from_utf8_lossy(&cfg).split([',', ' ']) {
            match word {
                "" => {}
                "read" => s.read = true,
                "metric" => {
                    s.metric = hostcalls::define_metric(MetricType::Counter, "floor.requests").ok()
                }
                "shared" => s.shared = true,
                "time" => s.time = true,
                "property" => s.property = true,
                "set" => s.set = true,
                "set12" => s.set12 = true,
                "map12" => s.map12 = true,
                "resp" => s.resp = true,
                _ => return false,
            }
        }
        if s.shared {
            let _ = hostcalls::set_shared_data("floor.key", Some(b"0123456789abcdef"), None);
        }
        self.0 = Rc::new(s);
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http(self.0.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http(Rc<Steps>);

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _n: usize, _end: bool) -> Action {
        let s = *self.0;
        if s.read {
            let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
        }
        if let Some(id) = s.metric {
            let _ = hostcalls::increment_metric(id, 1);
        }
        if s.shared {
            let _ = hostcalls::get_shared_data("floor.key");
        }
        if s.time {
            let _ = hostcalls::get_current_time();
        }
        if s.property {
            let _ = hostcalls::get_property(vec!["source", "address"]);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end: bool) -> Action {
        let s = *self.0;
        if s.resp {
            let _ = hostcalls::get_map_bytes(MapType::HttpResponseHeaders);
        }
        if s.set {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "x-floor", Some("1"));
        }
        if s.set12 {
            for (k, v) in TWELVE {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, k, Some(v));
            }
        }
        if s.map12 {
            // The same twelve headers in one call: read the map, add them, write it back.
            if let Ok(mut map) = hostcalls::get_map(MapType::HttpResponseHeaders) {
                map.extend(TWELVE.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                let pairs = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let _ = hostcalls::set_map(MapType::HttpResponseHeaders, pairs);
            }
        }
        Action::Continue
    }
}

const TWELVE: [(&str, &str); 12] = [
    ("x-floor-1", "1"),
    ("x-floor-2", "2"),
    ("x-floor-3", "3"),
    ("x-floor-4", "4"),
    ("x-floor-5", "5"),
    ("x-floor-6", "6"),
    ("x-floor-7", "7"),
    ("x-floor-8", "8"),
    ("x-floor-9", "9"),
    ("x-floor-10", "10"),
    ("x-floor-11", "11"),
    ("x-floor-12", "12"),
];
