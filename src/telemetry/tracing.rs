//! Optional OpenTelemetry tracing, exported over OTLP/HTTP (protobuf). Off by default.
//!
//! Spans: HTTP requests (`HTTP <method> <route>`), `task.start`, `task.stop`,
//! `source.connect`, `file.seal` (rotation), `checkpoint.persist`, and later uploads.
//! Attributes are ids, hosts, ports, file names and positions: never a password or a token.
//! With tracing off, the global tracer is OpenTelemetry's no-op and a span costs nothing.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::trace::{Span, Tracer};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};

use crate::config::TracingSettings;

const TRACER: &str = "binlog-server";

/// Flushes and stops the exporter when dropped (at process exit).
pub struct TracingGuard(Option<SdkTracerProvider>);

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global tracer provider when tracing is enabled.
pub fn init(s: &TracingSettings) -> Result<TracingGuard, String> {
    if !s.enabled {
        return Ok(TracingGuard(None));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(s.endpoint.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot set up the OTLP exporter for {}: {e}", s.endpoint))?;
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(s.export_interval_ms)).build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(s.sample_ratio))))
        .with_resource(Resource::builder().with_service_name(s.service_name.clone()).build())
        .build();
    global::set_tracer_provider(provider.clone());
    Ok(TracingGuard(Some(provider)))
}

/// Starts a span with attributes; it ends when dropped.
pub fn span(name: &'static str, attributes: Vec<KeyValue>) -> BoxedSpan {
    let mut span = global::tracer(TRACER).start(name);
    span.set_attributes(attributes);
    span
}

/// A span whose name is built at run time (HTTP routes).
pub fn span_named(name: String, attributes: Vec<KeyValue>) -> BoxedSpan {
    let mut span = global::tracer(TRACER).start(name);
    span.set_attributes(attributes);
    span
}
