//! Statement classification: which table a rendered statement writes, how, and
//! which columns it assigns.
//!
//! Diesel renders writes in a regular form (`INSERT INTO "t" ...`, `UPDATE "t" SET
//! "a" = $1, ...`, `DELETE FROM "t" ...`, backticks on SQLite), so a small scanner
//! that understands quoting and parentheses is enough. Anything it does not
//! recognise is not a write it captures, and runs untouched.

/// The kind of write a statement performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteKind {
    Insert,
    Update,
    Delete,
}

/// What an INSERT does on conflict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OnConflict {
    /// No ON CONFLICT clause, or DO NOTHING: returned rows were inserted.
    Insert,
    /// DO UPDATE SET these columns: a returned row was inserted or updated.
    DoUpdate(Vec<String>),
}

/// A recognised write statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    pub(crate) kind: WriteKind,
    /// The table's name parts as written: `["users"]` or `["app", "users"]`.
    pub(crate) table: Vec<String>,
    /// UPDATE's SET columns (empty for other kinds).
    pub(crate) set: Vec<String>,
    pub(crate) on_conflict: OnConflict,
    /// The statement already ends in a RETURNING clause.
    pub(crate) returning: bool,
}

/// A token of the scanner: a keyword or bare word (upper-cased), an identifier
/// (quoted or not), or one punctuation character. Literals and parameters are skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokenize(sql: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '"' | '`' => {
                let mut ident = String::new();
                loop {
                    match chars.next() {
                        Some((_, q)) if q == c => {
                            if chars.peek().map(|&(_, n)| n) == Some(c) {
                                chars.next();
                                ident.push(c);
                            } else {
                                break;
                            }
                        }
                        Some((_, ch)) => ident.push(ch),
                        None => return None,
                    }
                }
                tokens.push(Token::Quoted(ident));
            }
            '\'' => loop {
                match chars.next() {
                    Some((_, '\'')) => {
                        if chars.peek().map(|&(_, n)| n) == Some('\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => return None,
                }
            },
            // A comment or statement separator: not Diesel's output, leave it alone.
            ';' => return None,
            '-' if chars.peek().map(|&(_, n)| n) == Some('-') => return None,
            '/' if chars.peek().map(|&(_, n)| n) == Some('*') => return None,
            // `$tag$` or `$$` opens a dollar-quoted string, whose body may hold any
            // keyword (a function's RETURNING): not something to scan. `$1` is a bind.
            '$' if !chars.peek().is_some_and(|&(_, n)| n.is_ascii_digit()) => return None,
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '?' => {
                let mut word = String::from(c);
                while let Some(&(_, n)) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '$' {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Word(word.to_ascii_uppercase()));
            }
            c => tokens.push(Token::Punct(c)),
        }
    }
    Some(tokens)
}

struct Cursor<'t> {
    tokens: &'t [Token],
    pos: usize,
}

impl<'t> Cursor<'t> {
    fn peek(&self) -> Option<&'t Token> {
        self.tokens.get(self.pos)
    }
    fn next(&mut self) -> Option<&'t Token> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }
    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    /// A possibly schema-qualified name, as its parts: quoted as written, unquoted
    /// folded to lower case as PostgreSQL does (SQLite ignores case), so that raw
    /// SQL names a table the way Diesel's rendering does, whatever its quoting.
    fn table_name(&mut self) -> Option<Vec<String>> {
        let mut parts = vec![self.identifier()?];
        while matches!(self.peek(), Some(Token::Punct('.'))) {
            self.pos += 1;
            parts.push(self.identifier()?);
        }
        Some(parts)
    }
    fn identifier(&mut self) -> Option<String> {
        match self.next()? {
            Token::Quoted(n) => Some(n.clone()),
            Token::Word(w) if !is_reserved(w) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }
    /// `"a" = <expr>, "b" = <expr>` up to a top-level keyword in `stop`.
    fn assignments(&mut self, stop: &[&str]) -> Vec<String> {
        let mut columns = Vec::new();
        let mut expect_column = true;
        let mut depth = 0usize;
        while let Some(token) = self.peek() {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth = depth.saturating_sub(1),
                Token::Punct(',') if depth == 0 => expect_column = true,
                Token::Word(w) if depth == 0 && stop.contains(&w.as_str()) => break,
                Token::Quoted(c) if expect_column && depth == 0 => {
                    columns.push(c.clone());
                    expect_column = false;
                }
                Token::Word(c) if expect_column && depth == 0 => {
                    columns.push(c.to_ascii_lowercase());
                    expect_column = false;
                }
                _ => expect_column = false,
            }
            self.pos += 1;
        }
        columns
    }
    /// Whether a top-level RETURNING follows from here on.
    fn has_top_level(&self, word: &str) -> bool {
        let mut depth = 0usize;
        for token in &self.tokens[self.pos.min(self.tokens.len())..] {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth = depth.saturating_sub(1),
                Token::Word(w) if depth == 0 && w == word => return true,
                _ => {}
            }
        }
        false
    }
    /// Skips to the token after the next top-level `word`.
    fn skip_past(&mut self, word: &str) -> bool {
        let mut depth = 0usize;
        while let Some(token) = self.next() {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth = depth.saturating_sub(1),
                Token::Word(w) if depth == 0 && w == word => return true,
                _ => {}
            }
        }
        false
    }
}

/// Keywords that may follow `INSERT INTO`, `UPDATE` or `DELETE FROM` where a table
/// name is expected: SQL this scanner does not read.
fn is_reserved(word: &str) -> bool {
    matches!(
        word,
        "ONLY" | "SELECT" | "SET" | "WHERE" | "VALUES" | "DEFAULT"
    )
}

/// The words (identifiers, lower-cased) of raw SQL that [`classify`] cannot read but
/// that looks like it writes: a statement that starts with `INSERT`, `UPDATE`,
/// `DELETE`, `REPLACE` or `MERGE`, or a `WITH` holding one of them. `None` for SQL
/// that reads. Approximate by design: it lets writes that run without capture be
/// counted, never decides what is captured.
pub(crate) fn unreadable_write_words(sql: &str) -> Option<Vec<String>> {
    const WRITES: [&str; 5] = ["insert", "update", "delete", "replace", "merge"];
    let lower = sql.to_ascii_lowercase();
    let mut found = None;
    for statement in lower.split(';') {
        let words: Vec<&str> = statement
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let writes = match words.first() {
            Some(first) if WRITES.contains(first) => true,
            Some(&"with") => words.iter().any(|w| WRITES.contains(w)),
            _ => false,
        };
        if writes {
            found
                .get_or_insert_with(Vec::new)
                .extend(words.into_iter().map(str::to_owned));
        }
    }
    found
}

/// The name parts of a rendered table (`"app"."users"` -> `["app", "users"]`).
pub(crate) fn table_parts(sql: &str) -> Option<Vec<String>> {
    let tokens = tokenize(sql)?;
    let mut cur = Cursor {
        tokens: &tokens,
        pos: 0,
    };
    let parts = cur.table_name()?;
    (cur.pos == tokens.len()).then_some(parts)
}

/// A table name's parts as Diesel renders them for PostgreSQL (`"app"."users"`),
/// which SQLite reads too: the inverse of [`table_parts`].
pub(crate) fn render_table(parts: &[String]) -> String {
    parts
        .iter()
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// A rendered table name as its optional schema and its name
/// (`"app"."users"` -> `(Some("app"), "users")`); `None` for anything else.
#[cfg_attr(not(any(feature = "sqlite", feature = "mysql")), allow(dead_code))]
pub(crate) fn schema_and_name(sql: &str) -> Option<(Option<String>, String)> {
    match table_parts(sql)?.as_mut_slice() {
        [schema, name] => Some((Some(std::mem::take(schema)), std::mem::take(name))),
        [name] => Some((None, std::mem::take(name))),
        _ => None,
    }
}

/// Recognises a write in rendered SQL; `None` for anything else.
pub(crate) fn classify(sql: &str) -> Option<Write> {
    let tokens = tokenize(sql)?;
    let mut cur = Cursor {
        tokens: &tokens,
        pos: 0,
    };
    let returning = cur.has_top_level("RETURNING");
    let write = match cur.next()? {
        Token::Word(w) if w == "INSERT" || w == "REPLACE" => {
            if w == "INSERT" && cur.eat_word("OR") {
                cur.next()?;
            }
            // MySQL's `INSERT IGNORE INTO`.
            if w == "INSERT" {
                cur.eat_word("IGNORE");
            }
            if !cur.eat_word("INTO") {
                return None;
            }
            let table = cur.table_name()?;
            // MySQL's upsert: `ON DUPLICATE KEY UPDATE "a" = ...`.
            let duplicate_key = cur.has_top_level("DUPLICATE");
            let on_conflict = if duplicate_key {
                cur.skip_past("DUPLICATE");
                if cur.eat_word("KEY") && cur.eat_word("UPDATE") {
                    OnConflict::DoUpdate(cur.assignments(&["RETURNING"]))
                } else {
                    OnConflict::Insert
                }
            } else if cur.skip_past("CONFLICT") {
                if cur.skip_past("DO") && cur.eat_word("UPDATE") && cur.eat_word("SET") {
                    OnConflict::DoUpdate(cur.assignments(&["WHERE", "RETURNING"]))
                } else {
                    OnConflict::Insert
                }
            } else {
                OnConflict::Insert
            };
            Write {
                kind: WriteKind::Insert,
                table,
                set: Vec::new(),
                on_conflict,
                returning,
            }
        }
        Token::Word(w) if w == "UPDATE" => {
            let table = cur.table_name()?;
            if !cur.eat_word("SET") {
                return None;
            }
            let set = cur.assignments(&["FROM", "WHERE", "RETURNING"]);
            Write {
                kind: WriteKind::Update,
                table,
                set,
                on_conflict: OnConflict::Insert,
                returning,
            }
        }
        Token::Word(w) if w == "DELETE" => {
            if !cur.eat_word("FROM") {
                return None;
            }
            Write {
                kind: WriteKind::Delete,
                table: cur.table_name()?,
                set: Vec::new(),
                on_conflict: OnConflict::Insert,
                returning,
            }
        }
        _ => return None,
    };
    Some(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_names_its_table() {
        let w = classify(r#"INSERT INTO "users" ("name", "email") VALUES ($1, $2)"#).unwrap();
        assert_eq!(
            (w.kind, w.table.join("."), w.returning),
            (WriteKind::Insert, "users".to_owned(), false)
        );
        assert_eq!(w.on_conflict, OnConflict::Insert);
    }

    #[test]
    fn schema_qualified_table_keeps_its_schema() {
        let w = classify(r#"DELETE FROM "app"."users" WHERE ("users"."id" = $1)"#).unwrap();
        assert_eq!(
            (w.kind, w.table),
            (
                WriteKind::Delete,
                vec!["app".to_owned(), "users".to_owned()]
            )
        );
    }

    #[test]
    fn rendered_tables_parse_into_parts() {
        assert_eq!(table_parts(r#""users""#), Some(vec!["users".to_owned()]));
        assert_eq!(
            table_parts("`app_accounts`"),
            Some(vec!["app_accounts".to_owned()])
        );
        assert_eq!(
            table_parts(r#""app"."users""#),
            Some(vec!["app".to_owned(), "users".to_owned()])
        );
        assert_eq!(table_parts(r#""users" AS "u""#), None);
    }

    #[test]
    fn update_lists_its_set_columns() {
        let w = classify(r#"UPDATE "users" SET "name" = $1, "email" = lower($2, ("x")) WHERE ("users"."id" = $3)"#).unwrap();
        assert_eq!(w.kind, WriteKind::Update);
        assert_eq!(w.set, vec!["name", "email"]);
    }

    #[test]
    fn sqlite_backticks_and_insert_or_ignore() {
        let w = classify("INSERT OR IGNORE INTO `users` (`name`) VALUES (?)").unwrap();
        assert_eq!(
            (w.kind, w.table.join(".")),
            (WriteKind::Insert, "users".into())
        );
        let w = classify("UPDATE `users` SET `active` = ? WHERE (`users`.`id` = ?)").unwrap();
        assert_eq!(w.set, vec!["active"]);
    }

    #[test]
    fn upsert_do_update_lists_its_columns() {
        let w = classify(r#"INSERT INTO "users" ("id", "name") VALUES ($1, $2) ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name" RETURNING "users"."id""#).unwrap();
        assert_eq!(w.on_conflict, OnConflict::DoUpdate(vec!["name".into()]));
        assert!(w.returning);
    }

    #[test]
    fn mysql_on_duplicate_key_update_lists_its_columns() {
        let w = classify("INSERT INTO `users` (`id`, `name`) VALUES (?, ?), (?, ?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`), `n` = `n` + 1").unwrap();
        assert_eq!(
            w.on_conflict,
            OnConflict::DoUpdate(vec!["name".into(), "n".into()])
        );
        let w = classify("INSERT IGNORE INTO `users` (`id`) VALUES (?)").unwrap();
        assert_eq!(
            (w.kind, w.on_conflict),
            (WriteKind::Insert, OnConflict::Insert)
        );
    }

    #[test]
    fn upsert_do_nothing_only_inserts() {
        let w =
            classify(r#"INSERT INTO "users" ("id") VALUES ($1) ON CONFLICT DO NOTHING"#).unwrap();
        assert_eq!(w.on_conflict, OnConflict::Insert);
    }

    #[test]
    fn returning_inside_a_subquery_is_not_the_statements() {
        let w = classify(r#"DELETE FROM "users" WHERE "id" IN (SELECT "x" FROM "y")"#).unwrap();
        assert!(!w.returning);
    }

    #[test]
    fn strings_and_quoted_keywords_do_not_confuse_it() {
        let w = classify(r#"UPDATE "users" SET "name" = 'RETURNING ''x''' WHERE "returning" = $1"#)
            .unwrap();
        assert!(!w.returning);
        assert_eq!(w.set, vec!["name"]);
    }

    #[test]
    fn reads_and_empty_inserts_are_not_writes() {
        assert_eq!(classify(r#"SELECT "users"."id" FROM "users""#), None);
        assert_eq!(classify(r#"SELECT 1 FROM "users" WHERE 1=0"#), None);
    }

    #[test]
    fn unquoted_names_fold_to_lower_case_as_quoted_ones_do_not() {
        let w = classify("INSERT INTO Users (name) VALUES ('a')").unwrap();
        assert_eq!(w.table, ["users"]);
        let w = classify(r#"UPDATE app.Users SET Name = 'b', "Email" = 'c'"#).unwrap();
        assert_eq!(
            (w.table, w.set),
            (
                vec!["app".into(), "users".into()],
                vec!["name".into(), "Email".into()]
            )
        );
        assert_eq!(classify(r#"DELETE FROM "Users""#).unwrap().table, ["Users"]);
    }

    #[test]
    fn raw_sql_with_separators_comments_or_dollar_quotes_is_left_alone() {
        assert_eq!(classify(r#"DELETE FROM "users"; DELETE FROM "x""#), None);
        assert_eq!(classify(r#"DELETE FROM "users" -- all"#), None);
        assert_eq!(classify("UPDATE ONLY users SET name = 'a'"), None);
        assert_eq!(
            classify("INSERT INTO users (name) VALUES ($$ RETURNING $$)"),
            None,
            "a RETURNING inside a dollar-quoted string is not the statement's"
        );
        assert_eq!(
            classify("INSERT INTO users (name) VALUES ($1)").map(|w| w.returning),
            Some(false)
        );
    }

    #[test]
    fn unreadable_writes_are_told_from_reads() {
        let words =
            unreadable_write_words("WITH x AS (SELECT 1) DELETE FROM users -- gone").unwrap();
        assert!(words.contains(&"users".to_owned()));
        assert!(unreadable_write_words("SELECT * FROM users -- update users").is_none());
        assert!(
            unreadable_write_words("SET search_path TO app; INSERT INTO users DEFAULT VALUES")
                .is_some()
        );
    }
}
