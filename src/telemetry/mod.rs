//! Logging (slog), metrics and tracing set-up, done once at start-up by `app`.

pub mod logging;
pub mod metrics;
pub mod tracing;
