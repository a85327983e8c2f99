//! SQL statement splitting for `no-transaction` files, and mapping PostgreSQL's error
//! positions back to lines of the file.

/// Split SQL at top-level `;`, respecting `'…'`, `E'…'`, `"…"`, `$tag$…$tag$`, `--` and
/// (nested) `/* */` comments. Returns each statement with its byte offset; pieces holding only
/// whitespace and comments are dropped.
pub(super) fn split_statements(sql: &str) -> Vec<(usize, &str)> {
    fn ident(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
    }
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut has_code, mut i) = (0usize, false, 0usize);
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 1;
                i += 2;
                while i < b.len() && depth > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            q @ (b'\'' | b'"') => {
                has_code = true;
                let backslash = q == b'\''
                    && i > 0
                    && matches!(b[i - 1], b'E' | b'e')
                    && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if backslash && b[i] == b'\\' {
                        i += 2;
                    } else if b[i] == q {
                        if b.get(i + 1) == Some(&q) {
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'$' if i == 0 || !(ident(b[i - 1]) || b[i - 1] == b'$') => {
                has_code = true;
                let mut j = i + 1;
                while j < b.len() && ident(b[j]) {
                    j += 1;
                }
                let tag_ok =
                    j < b.len() && b[j] == b'$' && !(j > i + 1 && b[i + 1].is_ascii_digit());
                if tag_ok {
                    let tag = &sql[i..=j];
                    i = match sql[j + 1..].find(tag) {
                        Some(k) => j + 1 + k + tag.len(),
                        None => b.len(),
                    };
                } else {
                    i += 1;
                }
            }
            b';' => {
                if has_code {
                    out.push((start, &sql[start..i]));
                }
                i += 1;
                start = i;
                has_code = false;
            }
            c => {
                if !c.is_ascii_whitespace() {
                    has_code = true;
                }
                i += 1;
            }
        }
    }
    if has_code {
        out.push((start, &sql[start..]));
    }
    out
}

/// The 1-based line of `sql` holding PostgreSQL's 1-based character `position` in the
/// statement that starts at byte `offset`.
pub(super) fn line_of(sql: &str, offset: usize, position: usize) -> usize {
    let stmt = &sql[offset..];
    let bytes: usize = stmt
        .chars()
        .take(position.saturating_sub(1))
        .map(char::len_utf8)
        .sum();
    sql[..offset + bytes].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_statements() {
        let sql = "-- head; comment\ncreate table a (x text default 'a;b''c');\n\
                   /* block; /* nested; */ still; */\n\
                   create function f() returns int language sql as $$ select 1; $$;\n\
                   create function g() returns int language plpgsql as $body$ begin return 1; end $body$;\n\
                   select E'x\\';y', \"we;ird\", $1;\n\
                   ;;  -- only a comment\n";
        let parts: Vec<&str> = split_statements(sql)
            .iter()
            .map(|(_, s)| s.trim())
            .collect();
        assert_eq!(parts.len(), 4, "{parts:#?}");
        assert!(parts[0].ends_with("default 'a;b''c')"));
        assert!(parts[1].ends_with("as $$ select 1; $$"));
        assert!(parts[2].ends_with("end $body$"));
        assert!(parts[3].ends_with("\"we;ird\", $1"));
        assert_eq!(split_statements("  -- nothing\n/* here */  ").len(), 0);
        assert_eq!(split_statements("select 1").len(), 1);
        // Offsets point into the original text.
        for (offset, s) in split_statements(sql) {
            assert_eq!(&sql[offset..offset + s.len()], s);
        }
    }

    #[test]
    fn error_positions_map_to_lines() {
        let sql = "select 1;\n-- c\nselect é,\n  bogus;";
        let parts = split_statements(sql);
        let (offset, stmt) = parts[1];
        let pos = stmt.chars().position(|c| c == 'b').unwrap() + 1;
        assert_eq!(line_of(sql, offset, pos), 4);
        assert_eq!(line_of(sql, 0, 1), 1);
    }
}
