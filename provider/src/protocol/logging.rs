//! hclog-style JSON lines on stderr, which go-plugin parses and Terraform shows under `TF_LOG`:
//! `{"@level":"debug","@message":"…","@module":"provider.protocol","@timestamp":"…",…}` with the
//! fields of the enclosing spans (`tf_rpc`, `tf_req_id`, `tf_resource_type`) flattened in.
//!
//! The level comes from `TF_LOG_PROVIDER`, else `TF_LOG` (`trace|debug|info|warn|error`, `json`
//! meaning trace, as Terraform reads them). Unset means errors only. Never pass secrets to a log
//! call: nothing here can tell a token from any other string.

use std::io::Write;

use serde_json::{Map, Value as Json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// The level Terraform's environment asks for.
pub fn level_from_env() -> Option<Level> {
    let raw = std::env::var("TF_LOG_PROVIDER")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("TF_LOG").ok().filter(|s| !s.is_empty()))?;
    Some(parse_level(&raw))
}

fn parse_level(raw: &str) -> Level {
    match raw.trim().to_ascii_lowercase().as_str() {
        "debug" => Level::DEBUG,
        "info" => Level::INFO,
        "warn" => Level::WARN,
        "error" => Level::ERROR,
        // Terraform treats "json" and any unrecognised value as trace.
        _ => Level::TRACE,
    }
}

/// Installs the JSON layer as the global subscriber. Safe to call once per process.
pub fn init() {
    let level = level_from_env().unwrap_or(Level::ERROR);
    let layer = HclogLayer {
        max_level: level,
        module_prefix: "provider",
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

pub struct HclogLayer {
    max_level: Level,
    module_prefix: &'static str,
}

/// Fields recorded on a span, kept in its extensions.
struct SpanFields(Map<String, Json>);

struct JsonVisitor<'a>(&'a mut Map<String, Json>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), Json::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Json::from(format!("{value:?}")));
    }
}

impl<S> Layer<S> for HclogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        *metadata.level() <= self.max_level && is_ours(metadata.target())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = self.format(event, &ctx);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }
}

impl HclogLayer {
    fn format<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> String
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let mut out = Map::new();
        out.insert("@level".into(), Json::from(level_name(*meta.level())));
        out.insert("@message".into(), Json::from(""));
        out.insert("@module".into(), Json::from(self.module(meta.target())));
        out.insert("@timestamp".into(), Json::from(timestamp()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &fields.0 {
                        out.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        for (k, v) in fields {
            let key = if k == "message" { "@message".into() } else { k };
            out.insert(key, v);
        }
        let mut line = Json::Object(out).to_string();
        line.push('\n');
        line
    }

    /// `provider` for the provider's own code, `provider.<layer>` for its layers.
    fn module(&self, target: &str) -> String {
        let rest = target
            .strip_prefix("artifortress_provider")
            .or_else(|| target.strip_prefix("terraform_provider_artifortress"))
            .unwrap_or(target)
            .trim_start_matches("::");
        match rest.split("::").next() {
            Some(first) if !first.is_empty() => format!("{}.{first}", self.module_prefix),
            _ => self.module_prefix.to_string(),
        }
    }
}

fn is_ours(target: &str) -> bool {
    target.starts_with("artifortress_provider") || target.starts_with("terraform_provider")
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Go's `2006-01-02T15:04:05.000000Z07:00`: exactly six fractional digits.
pub fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_exactly_six_fractional_digits() {
        let ts = timestamp();
        let frac = ts.split('.').nth(1).unwrap();
        assert_eq!(frac.len(), 7, "{ts}");
        assert!(frac.ends_with('Z'));
    }

    #[test]
    fn levels_follow_terraform() {
        assert_eq!(parse_level("DEBUG"), Level::DEBUG);
        assert_eq!(parse_level("json"), Level::TRACE);
        assert_eq!(parse_level("bogus"), Level::TRACE);
    }

    #[test]
    fn modules_name_the_layer() {
        let layer = HclogLayer {
            max_level: Level::TRACE,
            module_prefix: "provider",
        };
        assert_eq!(
            layer.module("artifortress_provider::protocol::server"),
            "provider.protocol"
        );
        assert_eq!(layer.module("artifortress_provider"), "provider");
        assert_eq!(layer.module("terraform_provider_artifortress"), "provider");
    }

    #[test]
    fn events_become_one_json_line_with_span_fields() {
        use std::sync::{Arc, Mutex};
        // Capture by formatting through a subscriber scoped to this test.
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        struct Capture(Arc<Mutex<Vec<String>>>, HclogLayer);
        impl<S> Layer<S> for Capture
        where
            S: Subscriber + for<'a> LookupSpan<'a>,
        {
            fn on_new_span(&self, a: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
                self.1.on_new_span(a, id, ctx)
            }
            fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
                self.0.lock().unwrap().push(self.1.format(event, &ctx));
            }
        }
        let layer = Capture(
            lines.clone(),
            HclogLayer {
                max_level: Level::TRACE,
                module_prefix: "provider",
            },
        );
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc", tf_rpc = "ReadDataSource", tf_req_id = 7u64);
            let _g = span.enter();
            tracing::debug!(status = "ready", "probe answered");
        });
        let lines = lines.lock().unwrap();
        let v: Json = serde_json::from_str(lines[0].trim_end()).unwrap();
        assert_eq!(v["@level"], "debug");
        assert_eq!(v["@message"], "probe answered");
        assert_eq!(v["tf_rpc"], "ReadDataSource");
        assert_eq!(v["tf_req_id"], 7);
        assert_eq!(v["status"], "ready");
        assert!(lines[0].ends_with('\n') && lines[0].matches('\n').count() == 1);
    }
}
