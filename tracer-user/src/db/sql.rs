//! SQL text for `db.query.text` and `db.operation.name`: literals (strings, `E''`, `B''`, `X''`,
//! `U&''`, dollar-quoted strings, numbers) become `?`; identifiers, quoted identifiers, keywords,
//! operators and `$1` placeholders stay. Comments are dropped and runs of white space become one
//! space. The result is bounded ([`super::MAX_QUERY_TEXT`]).
//!
//! MySQL's dialect ([`Dialect::MySql`]) differs where a literal could otherwise leak: `"..."` is a
//! string (MySQL's default `sql_mode`; under `ANSI_QUOTES` it is an identifier, and replacing it
//! loses a name, never a value), a backslash escapes in every string, `` `...` `` quotes an
//! identifier, `#` starts a comment, and there is no dollar quoting.

use super::{truncate, MAX_QUERY_TEXT};

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Whose SQL a text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

/// The (PostgreSQL) statement with its literals replaced by `?`.
pub fn sanitize(sql: &str) -> String {
    sanitize_in(sql, Dialect::Postgres)
}

/// The statement, in `dialect`, with its literals replaced by `?`.
#[expect(clippy::too_many_lines, reason = "one scanner over the statement's tokens, each kind an arm")]
#[expect(clippy::many_single_char_names, reason = "scanner indexes and lengths, named as in a lexer")]
pub fn sanitize_in(sql: &str, dialect: Dialect) -> String {
    let mysql = dialect == Dialect::MySql;
    let chars: Vec<char> = sql.chars().collect();
    let n = chars.len();
    let mut out = String::with_capacity(sql.len().min(MAX_QUERY_TEXT + 8));
    let mut i = 0;
    // A space is pending between tokens (collapsed white space and dropped comments).
    let mut space = false;
    let push = |out: &mut String, space: &mut bool, s: &str| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push_str(s);
    };
    while i < n {
        if out.len() > MAX_QUERY_TEXT {
            break;
        }
        let c = chars[i];
        // White space.
        if c.is_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        // Comments: `-- ...` to the end of the line, `/* ... */` (nested, as PostgreSQL allows).
        if (c == '-' && chars.get(i + 1) == Some(&'-')) || (mysql && c == '#') {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
            space = true;
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0usize;
            while i < n {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            space = true;
            continue;
        }
        // String literals with a prefix: E'..', B'..', X'..', N'..', U&'..'.
        if is_ident_start(c) {
            let prefixed = match (c.to_ascii_uppercase(), chars.get(i + 1), chars.get(i + 2)) {
                ('E' | 'B' | 'X' | 'N', Some('\''), _) => Some((1, c.eq_ignore_ascii_case(&'e'))),
                ('U', Some('&'), Some('\'')) => Some((2, false)),
                _ => None,
            };
            if let Some((skip, backslashes)) = prefixed {
                i = skip_string(&chars, i + skip, backslashes);
                push(&mut out, &mut space, "?");
                continue;
            }
            let start = i;
            while i < n && is_ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            push(&mut out, &mut space, &word);
            continue;
        }
        if c == '\'' || (mysql && c == '"') {
            i = skip_quoted(&chars, i, c, mysql);
            push(&mut out, &mut space, "?");
            continue;
        }
        if c == '"' || (mysql && c == '`') {
            // Quoted identifier ("" escapes a quote): kept.
            let start = i;
            i += 1;
            while i < n {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            push(&mut out, &mut space, &word);
            continue;
        }
        if c == '$' && !mysql {
            // `$1`: a placeholder, kept.
            if chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                let start = i;
                i += 1;
                while i < n && chars[i].is_ascii_digit() {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                push(&mut out, &mut space, &word);
                continue;
            }
            // `$tag$ ... $tag$`: a dollar-quoted string.
            let mut j = i + 1;
            while j < n && chars[j] != '$' && is_ident_char(chars[j]) {
                j += 1;
            }
            if j < n && chars[j] == '$' {
                let tag: Vec<char> = chars[i..=j].to_vec();
                let mut k = j + 1;
                let mut end = n;
                while k + tag.len() <= n {
                    if chars[k..k + tag.len()] == tag[..] {
                        end = k + tag.len();
                        break;
                    }
                    k += 1;
                }
                i = end;
                push(&mut out, &mut space, "?");
                continue;
            }
            push(&mut out, &mut space, "$");
            i += 1;
            continue;
        }
        // Numbers: 42, 3.14, .5, 1e-3, 0x1F, 0b101, 0o17, 1_000.
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            i = skip_number(&chars, i);
            push(&mut out, &mut space, "?");
            continue;
        }
        // Anything else (operators, punctuation) is kept, one character at a time; no space
        // before `,`, `)` or after `(` unless the statement had one.
        let mut buf = [0u8; 4];
        push(&mut out, &mut space, c.encode_utf8(&mut buf));
        i += 1;
    }
    truncate(out, MAX_QUERY_TEXT)
}

/// From the opening quote at `i`, past the closing one. `''` is an escaped quote; with
/// `backslashes` (E'' strings) so is `\'`. An unterminated string runs to the end.
fn skip_string(chars: &[char], i: usize, backslashes: bool) -> usize {
    skip_quoted(chars, i, '\'', backslashes)
}

/// As [`skip_string`], for a string quoted by `quote` (MySQL's `"..."` too).
fn skip_quoted(chars: &[char], mut i: usize, quote: char, backslashes: bool) -> usize {
    let n = chars.len();
    i += 1;
    while i < n {
        match chars[i] {
            '\\' if backslashes => i += 2,
            c if c == quote && chars.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    n
}

fn skip_number(chars: &[char], mut i: usize) -> usize {
    let n = chars.len();
    if chars[i] == '0' && chars.get(i + 1).is_some_and(|c| matches!(c, 'x' | 'X' | 'b' | 'B' | 'o' | 'O')) {
        i += 2;
        while i < n && (chars[i].is_ascii_hexdigit() || chars[i] == '_') {
            i += 1;
        }
        return i;
    }
    while i < n && (chars[i].is_ascii_digit() || chars[i] == '_' || chars[i] == '.') {
        i += 1;
    }
    if i < n && matches!(chars[i], 'e' | 'E') {
        let mut j = i + 1;
        if j < n && matches!(chars[j], '+' | '-') {
            j += 1;
        }
        if j < n && chars[j].is_ascii_digit() {
            i = j;
            while i < n && chars[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// Statements that are the main statement of a `WITH` query.
const MAIN_AFTER_WITH: [&str; 7] = ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE"];

/// The statement's first keyword, upper-cased (`SELECT`, `INSERT`, `BEGIN`, ...); for a `WITH`
/// query, the main statement's (`WITH x AS (...) DELETE ...` gives `DELETE`). Best effort: None
/// when the text does not start with a word.
pub fn operation(sql: &str) -> Option<String> {
    operation_in(sql, Dialect::Postgres)
}

/// [`operation`] of a statement in `dialect`.
pub fn operation_in(sql: &str, dialect: Dialect) -> Option<String> {
    // Work on the sanitized text: no literals or comments to trip over.
    let s = sanitize_in(sql, dialect);
    let mut words = Vec::new();
    let mut depth = 0i32;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '"' => {
                // Skip a quoted identifier.
                for (_, d) in chars.by_ref() {
                    if d == '"' {
                        break;
                    }
                }
            }
            c if is_ident_start(c) => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if !is_ident_char(d) {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                words.push((depth, &s[i..end]));
                if words.len() == 1 && !words[0].1.eq_ignore_ascii_case("WITH") {
                    break;
                }
                if words.len() > 1 && depth == 0 {
                    let w = words.last().unwrap().1.to_ascii_uppercase();
                    if MAIN_AFTER_WITH.contains(&w.as_str()) {
                        return Some(w);
                    }
                }
                if words.len() > 10_000 {
                    break;
                }
            }
            _ => {}
        }
    }
    let first = words.first()?.1;
    if first.len() > 32 {
        return None;
    }
    Some(first.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders() {
        let cases = [
            ("SELECT name FROM items WHERE id = 1", "SELECT name FROM items WHERE id = ?"),
            ("SELECT name FROM items WHERE id = $1", "SELECT name FROM items WHERE id = $1"),
            ("SELECT count(*) FROM items WHERE name <> 'gone'", "SELECT count(*) FROM items WHERE name <> ?"),
            ("SELECT 'it''s', 'a'", "SELECT ?, ?"),
            (r"SELECT E'it\'s \\', e'x'", "SELECT ?, ?"),
            ("SELECT B'0101', X'1F', x'ab', N'nat', U&'d\\0061t'", "SELECT ?, ?, ?, ?, ?"),
            ("SELECT $$a 'b' $1$$, $tag$ x $$ y $tag$", "SELECT ?, ?"),
            ("SELECT 3.14, .5, 1e-3, 2E+10, 0x1F, 1_000, -7", "SELECT ?, ?, ?, ?, ?, ?, -?"),
            ("SELECT t1.c2 FROM t1 WHERE col3=4", "SELECT t1.c2 FROM t1 WHERE col3=?"),
            ("SELECT \"it's 1\" FROM \"T\"\"2\"", "SELECT \"it's 1\" FROM \"T\"\"2\""),
            ("SELECT 1 -- secret 42\nFROM x /* 7 /* nested */ 8 */ WHERE y = 'z'", "SELECT ? FROM x WHERE y = ?"),
            ("  SELECT\n\t1  ", "SELECT ?"),
            ("INSERT INTO items VALUES ($1, $2)", "INSERT INTO items VALUES ($1, $2)"),
            ("SELECT 'unterminated", "SELECT ?"),
            ("SELECT ARRAY[1,2]::int[]", "SELECT ARRAY[?,?]::int[]"),
            ("SELECT 'é' || naïve FROM t", "SELECT ? || naïve FROM t"),
        ];
        for (sql, want) in cases {
            assert_eq!(sanitize(sql), want, "{sql}");
        }
    }

    #[test]
    fn mysql_literals_become_placeholders() {
        let cases = [
            ("SELECT name FROM items WHERE id = 1", "SELECT name FROM items WHERE id = ?"),
            // PyMySQL's and mysqlclient's escaping: a backslash before the quote.
            (r"SELECT * FROM t WHERE a = 'it\'s' AND b = 'x\\'", "SELECT * FROM t WHERE a = ? AND b = ?"),
            ("SELECT \"secret\", \"a\"\"b\" FROM t", "SELECT ?, ? FROM t"),
            ("SELECT `it's`, `a``b` FROM `t`", "SELECT `it's`, `a``b` FROM `t`"),
            ("SELECT 1 # secret 42\nFROM x -- 7\n", "SELECT ? FROM x"),
            ("SELECT $x, a$b FROM t WHERE c = X'1F'", "SELECT $x, a$b FROM t WHERE c = ?"),
        ];
        for (sql, want) in cases {
            assert_eq!(sanitize_in(sql, Dialect::MySql), want, "{sql}");
        }
        assert_eq!(operation_in("# c\n  select \"x\"", Dialect::MySql).as_deref(), Some("SELECT"));
        assert_eq!(operation_in("SELEC name FROM items", Dialect::MySql).as_deref(), Some("SELEC"));
    }

    #[test]
    fn sanitized_text_is_bounded() {
        let long = format!("SELECT {}", "a, ".repeat(5000));
        assert!(sanitize(&long).len() <= MAX_QUERY_TEXT);
        let long = format!("SELECT '{}'", "é".repeat(5000));
        assert_eq!(sanitize(&long), "SELECT ?");
    }

    #[test]
    fn operation_is_the_first_keyword_or_with_main_statement() {
        let cases = [
            ("SELECT 1", Some("SELECT")),
            ("  select 1", Some("SELECT")),
            ("insert into t values (1)", Some("INSERT")),
            ("/* c */ UPDATE t SET a = 1", Some("UPDATE")),
            ("(SELECT 1) UNION (SELECT 2)", Some("SELECT")),
            ("BEGIN", Some("BEGIN")),
            ("WITH x AS (SELECT 1) SELECT * FROM x", Some("SELECT")),
            ("WITH RECURSIVE r(n) AS (VALUES (1) UNION SELECT n+1 FROM r) SELECT n FROM r", Some("SELECT")),
            (
                "WITH d AS (DELETE FROM t RETURNING *), e AS MATERIALIZED (SELECT 1) INSERT INTO u SELECT * FROM d",
                Some("INSERT"),
            ),
            ("WITH \"select\" AS (SELECT 1) DELETE FROM t", Some("DELETE")),
            ("WITH broken", Some("WITH")),
            ("", None),
            ("123", None),
            ("'x'", None),
        ];
        for (sql, want) in cases {
            assert_eq!(operation(sql).as_deref(), want, "{sql}");
        }
    }
}
