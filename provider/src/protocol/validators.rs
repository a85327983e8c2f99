//! Attribute validators: small named values declared on the schema. They skip null and unknown
//! values (Terraform validates again once values are known) and report with the attribute path.

use super::diagnostics::{AttributePath, Diagnostic, Diagnostics};
use super::value::Value;
use crate::duration;

#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    /// The string is one of these.
    OneOf(&'static [&'static str]),
    /// A whole number in this inclusive range.
    IntBetween(i64, i64),
    /// A Go duration (`"30s"`, `"5m"`), at least this many milliseconds.
    Duration { min_millis: u64 },
    /// An absolute `http` or `https` URL.
    HttpUrl,
    /// A non-empty string.
    NotEmpty,
}

impl Validator {
    /// One line for docs and diagnostics.
    pub fn description(&self) -> String {
        match self {
            Validator::OneOf(options) => format!(
                "one of {}",
                options
                    .iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Validator::IntBetween(lo, hi) => format!("a whole number from {lo} to {hi}"),
            Validator::Duration { min_millis } if *min_millis > 1 => format!(
                "a duration such as `30s` or `5m`, at least {}",
                duration::format(std::time::Duration::from_millis(*min_millis))
            ),
            Validator::Duration { .. } => "a duration such as `30s` or `5m`".into(),
            Validator::HttpUrl => "an `http://` or `https://` URL".into(),
            Validator::NotEmpty => "a non-empty string".into(),
        }
    }

    pub fn check(&self, value: &Value, path: &AttributePath, diags: &mut Diagnostics) {
        if value.is_null() || value.is_unknown() {
            return;
        }
        let invalid = |got: String| {
            Diagnostic::error(
                "Invalid attribute value",
                format!("{path} must be {}; got {got}.", self.description()),
            )
            .at(path.clone())
        };
        match self {
            Validator::OneOf(options) => {
                if let Some(s) = value.as_str()
                    && !options.contains(&s)
                {
                    diags.push(invalid(format!("{s:?}")));
                }
            }
            Validator::IntBetween(lo, hi) => {
                if let Some(n) = value.as_number() {
                    match n.as_i64() {
                        Some(i) if (*lo..=*hi).contains(&i) => {}
                        _ => diags.push(invalid(n.to_string())),
                    }
                }
            }
            Validator::Duration { min_millis } => {
                if let Some(s) = value.as_str() {
                    match duration::parse(s) {
                        Ok(d) if d.as_millis() >= u128::from(*min_millis) => {}
                        Ok(_) => diags.push(invalid(format!("{s:?}"))),
                        Err(e) => diags.push(
                            Diagnostic::error("Invalid duration", e.to_string()).at(path.clone()),
                        ),
                    }
                }
            }
            Validator::HttpUrl => {
                if let Some(s) = value.as_str() {
                    match url::Url::parse(s) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                        Ok(_) => diags.push(invalid(format!("{s:?}"))),
                        Err(e) => diags.push(invalid(format!("{s:?} ({e})"))),
                    }
                }
            }
            Validator::NotEmpty => {
                if value.as_str().is_some_and(|s| s.trim().is_empty()) {
                    diags.push(invalid("an empty string".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(v: &Validator, value: Value) -> usize {
        let mut d = Diagnostics::new();
        v.check(&value, &AttributePath::attr("x"), &mut d);
        d.0.len()
    }

    #[test]
    fn validators_accept_and_refuse() {
        let one_of = Validator::OneOf(&["ready", "degraded"]);
        assert_eq!(errors(&one_of, "ready".into()), 0);
        assert_eq!(errors(&one_of, "up".into()), 1);
        assert_eq!(errors(&one_of, Value::unknown()), 0);
        assert_eq!(errors(&one_of, Value::Null), 0);
        let between = Validator::IntBetween(1, 100);
        assert_eq!(errors(&between, Value::int(3)), 0);
        assert_eq!(errors(&between, Value::int(0)), 1);
        let dur = Validator::Duration { min_millis: 100 };
        assert_eq!(errors(&dur, "2s".into()), 0);
        assert_eq!(errors(&dur, "10ms".into()), 1);
        assert_eq!(errors(&dur, "soon".into()), 1);
        assert_eq!(
            errors(&Validator::HttpUrl, "http://127.0.0.1:8086".into()),
            0
        );
        assert_eq!(errors(&Validator::HttpUrl, "ftp://x".into()), 1);
        assert_eq!(errors(&Validator::HttpUrl, "not a url".into()), 1);
    }
}
