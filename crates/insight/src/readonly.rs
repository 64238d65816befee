//! The first of two guards that keep the warehouse as loaded: a user's SQL must be exactly
//! one statement that begins like a query. The second guard is SQLite's own
//! `PRAGMA query_only`, set once loading is done, which refuses any write the first one
//! lets through (`WITH x AS (...) DELETE ...` begins like a query); since only one
//! statement runs, nothing can switch it off.

use crate::InsightError;

/// Statements may begin with these keywords.
const QUERY_STARTS: &[&str] = &["SELECT", "WITH", "VALUES"];

/// Accepts one statement beginning with SELECT, WITH or VALUES (an ending `;` is fine);
/// comments, string literals and quoted names are skipped while looking for more.
pub fn check(sql: &str) -> Result<(), InsightError> {
    let mut first_word: Option<String> = None;
    let mut ended = false;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let rest = &sql[i..];
        let skipped = match c {
            _ if c.is_whitespace() => continue,
            '-' if rest.starts_with("--") => rest.find('\n').unwrap_or(rest.len()),
            '/' if rest.starts_with("/*") => match rest[2..].find("*/") {
                Some(end) => end + 4,
                None => return Err(refuse("a /* comment is not closed")),
            },
            '\'' | '"' | '`' => closing(rest, c)?,
            '[' => match rest.find(']') {
                Some(end) => end + 1,
                None => return Err(refuse("a [name] is not closed")),
            },
            ';' => {
                ended = true;
                continue;
            }
            _ => {
                if ended {
                    return Err(refuse("more than one statement"));
                }
                if first_word.is_none() {
                    let word: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    first_word = Some(word.to_ascii_uppercase());
                }
                continue;
            }
        };
        let comment = matches!(c, '-' | '/');
        if !comment {
            if ended {
                return Err(refuse("more than one statement"));
            }
            // A statement that begins with a quoted text is no query.
            first_word.get_or_insert_with(String::new);
        }
        // Skip the rest of the comment or quoted text (its first char is consumed).
        let end = i + skipped;
        while chars.peek().is_some_and(|&(j, _)| j < end) {
            chars.next();
        }
    }
    match first_word {
        None => Err(refuse("the statement is empty")),
        Some(word) if QUERY_STARTS.contains(&word.as_str()) => Ok(()),
        Some(word) if word.is_empty() => Err(refuse("it does not begin with a keyword")),
        Some(word) => Err(refuse(&format!("it begins with {word}"))),
    }
}

/// Length of a quoted text starting at `rest[0] == quote`, where a doubled quote stands for
/// itself.
fn closing(rest: &str, quote: char) -> Result<usize, InsightError> {
    let mut at = quote.len_utf8();
    loop {
        match rest[at..].find(quote) {
            None => {
                return Err(refuse(&format!(
                    "a {quote}quoted{quote} text is not closed"
                )));
            }
            Some(k) => {
                at += k + quote.len_utf8();
                if rest[at..].starts_with(quote) {
                    at += quote.len_utf8();
                } else {
                    return Ok(at);
                }
            }
        }
    }
}

fn refuse(why: &str) -> InsightError {
    InsightError::NotReadOnly(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "  select org, sum(bytes) from usage_hourly group by org;  ",
            "WITH t AS (SELECT 1) SELECT * FROM t",
            "VALUES (1), (2)",
            "SELECT ';' AS semicolon, \"odd;name\", [x;y], `z;` FROM sessions -- ; DROP TABLE x\n",
            "/* a; comment */ SELECT 'it''s; fine'",
            "SELECT 1 ; -- trailing comment after the one statement",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
        }
    }

    #[test]
    fn writes_and_second_statements_are_refused() {
        for (sql, why) in [
            ("DELETE FROM sessions", "begins with DELETE"),
            ("insert into orgs values (1)", "begins with INSERT"),
            ("PRAGMA query_only = OFF", "begins with PRAGMA"),
            ("ATTACH 'x.db' AS x", "begins with ATTACH"),
            ("SELECT 1; DROP TABLE sessions", "more than one statement"),
            (
                "SELECT 1;;UPDATE orgs SET org = 'x'",
                "more than one statement",
            ),
            ("SELECT 1; 'x'", "more than one statement"),
            ("SELECT 'unclosed", "not closed"),
            ("SELECT 1 /* unclosed", "not closed"),
            ("'x'", "does not begin with a keyword"),
            ("   ", "empty"),
            ("-- only a comment", "empty"),
        ] {
            let err = check(sql).expect_err(sql).to_string();
            assert!(err.contains(why), "{sql:?}: {err}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(sql in "\\PC{0,60}") {
            let _ = check(&sql);
        }

        #[test]
        fn a_second_statement_is_always_seen(tail in "[A-Za-z]{1,10}") {
            let sql = format!("SELECT 'a;b' ; {tail}");
            prop_assert!(check(&sql).is_err());
        }
    }
}
