//! Log lines with the policy's prefix: `meshwall.<Policy::NAME>: …`, so an operator greps one
//! name per policy (Envoy adds its own `wasm log <plugin> <root_id> <vm_id>:` before it).
//!
//! ```
//! # use meshwall_core::{policy_log, Policy};
//! # fn f<P: Policy>() {
//! policy_log!(warn, P, "hold_headers is off: {}", "request headers go on early");
//! # }
//! ```

/// `policy_log!(level, PolicyType, format, args…)`: logs at `level` (`error`, `warn`, `info`,
/// `debug`, `trace`) with the prefix `meshwall.<PolicyType::NAME>: `. The arguments are only
/// formatted when the host's log level lets the line through.
#[macro_export]
macro_rules! policy_log {
    ($level:ident, $policy:ty, $($arg:tt)+) => {
        $crate::__log::$level!(
            "meshwall.{}: {}",
            <$policy as $crate::Policy>::NAME,
            format_args!($($arg)+)
        )
    };
}

#[cfg(test)]
mod tests {
    use crate::{Host, Policy};
    use std::sync::Mutex;

    struct Named;
    impl Policy for Named {
        type Config = ();
        type Exchange = ();
        const NAME: &'static str = "named";
        fn new(_: (), _: &dyn Host) -> Result<Self, crate::ConfigError> {
            Ok(Named)
        }
    }

    /// Records every line (the test binary's only logger).
    struct Recorder(Mutex<Vec<(log::Level, String)>>);
    impl log::Log for Recorder {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if let Ok(mut lines) = self.0.lock() {
                lines.push((record.level(), record.args().to_string()));
            }
        }
        fn flush(&self) {}
    }
    static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));

    #[test]
    fn lines_carry_the_policys_name_and_level() {
        let _ = log::set_logger(&RECORDER);
        log::set_max_level(log::LevelFilter::Trace);
        policy_log!(warn, Named, "{} of {}", 1, "these");
        let lines = RECORDER.0.lock().unwrap();
        assert!(
            lines.contains(&(log::Level::Warn, "meshwall.named: 1 of these".to_string())),
            "{lines:?}"
        );
    }
}
