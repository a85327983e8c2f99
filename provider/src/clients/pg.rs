//! PostgreSQL identifiers taken from configuration: the one validation rule and the one quoting
//! function every client uses before a name reaches SQL.

/// `^[A-Za-z_][A-Za-z0-9_]*$`, at most 63 bytes (PostgreSQL's identifier limit; also the
/// service's rule for restore targets).
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

/// A double-quoted SQL identifier (inner `"` doubled), keeping its case. Callers validate
/// names first; quoting is the second line of defence.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_database_names_are_plain_identifiers() {
        assert!(valid_identifier("artifortress_drill"));
        assert!(valid_identifier("_x9"));
        assert!(!valid_identifier("9x"));
        assert!(!valid_identifier("drill\"; drop database prod; --"));
        assert!(!valid_identifier("o'brien"));
        assert!(!valid_identifier(""));
        assert!(!valid_identifier(&"a".repeat(64)));
    }

    #[test]
    fn identifiers_are_plain_and_at_most_63_bytes() {
        for ok in [
            "artifortress",
            "artifortress_staging",
            "_x",
            "A1",
            &"a".repeat(63),
        ] {
            assert!(valid_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "bad-name",
            "1abc",
            "a b",
            "a\"b",
            "a;drop role x",
            "é",
            "x'",
            &"a".repeat(64),
        ] {
            assert!(!valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn quoting_doubles_inner_quotes_and_keeps_case() {
        assert_eq!(quote_ident("Artifortress"), "\"Artifortress\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_ident("x\"; drop role y; --"),
            "\"x\"\"; drop role y; --\""
        );
    }
}
