//! Diagnostics (severity, summary, detail, attribute path) and attribute paths.
//!
//! Every error that reaches the user goes through here: a summary naming the operation, a detail
//! saying what happened and what to do (including the remote error), and the attribute it is about.

use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AttributePath {
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Attribute(String),
    Key(String),
    Index(i64),
}

impl AttributePath {
    pub fn root() -> Self {
        Self::default()
    }

    /// A path of attribute names: `AttributePath::attrs(["timeouts", "create"])`.
    pub fn attrs<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        AttributePath {
            steps: names
                .into_iter()
                .map(|n| Step::Attribute(n.into()))
                .collect(),
        }
    }

    pub fn attr(name: impl Into<String>) -> Self {
        Self::attrs([name])
    }

    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn child_attr(&self, name: &str) -> Self {
        let mut p = self.clone();
        p.push_attr(name);
        p
    }

    pub fn child_key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.push_key(key);
        p
    }

    pub fn child_index(&self, index: i64) -> Self {
        let mut p = self.clone();
        p.push_index(index);
        p
    }

    pub fn push_attr(&mut self, name: &str) {
        self.steps.push(Step::Attribute(name.to_string()));
    }
    pub fn push_key(&mut self, key: &str) {
        self.steps.push(Step::Key(key.to_string()));
    }
    pub fn push_index(&mut self, index: i64) {
        self.steps.push(Step::Index(index));
    }
    pub fn pop(&mut self) {
        self.steps.pop();
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str("(root)");
        }
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Attribute(name) if i == 0 => write!(f, "{name}")?,
                Step::Attribute(name) => write!(f, ".{name}")?,
                Step::Key(k) => write!(f, "[{k:?}]")?,
                Step::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub summary: String,
    pub detail: String,
    pub attribute: Option<AttributePath>,
}

impl Diagnostic {
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Severity::Error, summary, detail)
    }

    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Severity::Warning, summary, detail)
    }

    fn new(severity: Severity, summary: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut summary = summary.into();
        // Terraform and the SDKs treat an empty summary as a bug; never send one.
        if summary.trim().is_empty() {
            summary = "Provider error".to_string();
        }
        Diagnostic {
            severity,
            summary,
            detail: detail.into(),
            attribute: None,
        }
    }

    /// An error that can only come from a mistake in this provider.
    pub fn provider_bug(summary: impl Into<String>, detail: impl fmt::Display) -> Self {
        Self::error(
            summary,
            format!(
                "{detail}\n\nThis is a bug in terraform-provider-artifortress {}; please report it \
                 with the Terraform version and, if possible, TF_LOG=debug output.",
                env!("CARGO_PKG_VERSION")
            ),
        )
    }

    pub fn at(mut self, path: AttributePath) -> Self {
        self.attribute = if path.is_root() { None } else { Some(path) };
        self
    }

    pub fn at_attr(self, name: &str) -> Self {
        self.at(AttributePath::attr(name))
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// An ordered collection of diagnostics, as returned by every RPC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<T: IntoIterator<Item = Diagnostic>>(iter: T) -> Self {
        Diagnostics(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_terraform() {
        let p = AttributePath::attr("hosts")
            .child_key("api-1")
            .child_attr("roles")
            .child_index(0);
        assert_eq!(p.to_string(), "hosts[\"api-1\"].roles[0]");
    }

    #[test]
    fn summaries_are_never_empty() {
        assert_eq!(Diagnostic::error("  ", "x").summary, "Provider error");
    }
}
