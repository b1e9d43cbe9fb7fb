//! The SQL side of the MySQL capture: a scanner for the statements Diesel renders
//! for MySQL, and [`RawQuery`], a statement assembled from pieces of one and bind
//! values copied from it or from rows the server returned.

use diesel::mysql::{Mysql, MysqlType};
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{self, Untyped};
use std::io::Write;
use std::ops::Range;

/// A token of a rendered statement, with its byte range in the SQL text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A keyword or bare word, upper-cased.
    Word(String),
    /// A backtick-quoted identifier, unquoted.
    Ident(String),
    /// A string literal.
    Str,
    /// The `n`th `?` placeholder.
    Bind(usize),
    Open,
    Close,
    Comma,
    Dot,
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) span: Range<usize>,
}

/// Splits `sql` into tokens; `None` for comments or unterminated quotes, which
/// Diesel never renders.
pub(crate) fn scan(sql: &str) -> Option<Vec<Token>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut binds = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let kind = match c {
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'`' => {
                let mut ident = Vec::new();
                i += 1;
                loop {
                    match bytes.get(i)? {
                        b'`' if bytes.get(i + 1) == Some(&b'`') => {
                            ident.push(b'`');
                            i += 2;
                        }
                        b'`' => {
                            i += 1;
                            break;
                        }
                        b => {
                            ident.push(*b);
                            i += 1;
                        }
                    }
                }
                Kind::Ident(String::from_utf8(ident).ok()?)
            }
            b'\'' | b'"' => {
                i += 1;
                loop {
                    match bytes.get(i)? {
                        b'\\' => i += 2,
                        q if *q == c && bytes.get(i + 1) == Some(&c) => i += 2,
                        q if *q == c => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                Kind::Str
            }
            b'#' => return None,
            b'-' if bytes.get(i + 1) == Some(&b'-') => return None,
            b'/' if bytes.get(i + 1) == Some(&b'*') => return None,
            b'?' => {
                i += 1;
                binds += 1;
                Kind::Bind(binds - 1)
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'.' => {
                i += 1;
                Kind::Dot
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] == b'$'
                        || bytes[i] >= 0x80)
                {
                    i += 1;
                }
                Kind::Word(sql[start..i].to_ascii_uppercase())
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        tokens.push(Token {
            kind,
            span: start..i,
        });
    }
    Some(tokens)
}

/// The index of the first top-level (outside parentheses) word `word` at or after `from`.
pub(crate) fn top_level(tokens: &[Token], from: usize, word: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(from) {
        match &token.kind {
            Kind::Open => depth += 1,
            Kind::Close => depth = depth.saturating_sub(1),
            Kind::Word(w) if depth == 0 && w == word => return Some(i),
            _ => {}
        }
    }
    None
}

/// The index just past the parenthesised group that opens at `open`.
pub(crate) fn group_end(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.kind {
            Kind::Open => depth += 1,
            Kind::Close => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// One bind value: its MySQL type and its bytes as Diesel sends them (`None`: NULL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bind {
    pub(crate) ty: MysqlType,
    pub(crate) value: Option<Raw>,
}

/// Bytes already serialized for a MySQL bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Raw(pub(crate) Vec<u8>);

#[derive(Debug)]
enum Part {
    Sql(String),
    Bind(Bind),
}

/// A statement assembled from SQL text and binds.
///
/// Plumbing: it appears in the signature of a registry function.
#[derive(Debug, Default)]
pub struct RawQuery {
    parts: Vec<Part>,
    binds: usize,
}

/// Statements with more binds than this are not kept in Diesel's prepared
/// statement cache: a key list differs in length from one statement to the next.
const CACHED_BINDS: usize = 64;

impl RawQuery {
    pub(crate) fn sql(mut self, sql: &str) -> Self {
        self.push_sql(sql);
        self
    }

    pub(crate) fn push_sql(&mut self, sql: &str) {
        match self.parts.last_mut() {
            Some(Part::Sql(text)) => text.push_str(sql),
            _ => self.parts.push(Part::Sql(sql.to_owned())),
        }
    }

    pub(crate) fn push_bind(&mut self, bind: Bind) {
        self.binds += 1;
        self.parts.push(Part::Bind(bind));
    }

    /// Appends `sql[range]`, whose `?` placeholders are `tokens`' binds, taking
    /// their values from `binds`.
    pub(crate) fn push_source(
        &mut self,
        sql: &str,
        tokens: &[Token],
        range: Range<usize>,
        binds: &[Bind],
    ) -> Option<()> {
        if range.start >= range.end {
            return Some(());
        }
        let mut at = tokens[range.start].span.start;
        for token in &tokens[range.clone()] {
            if let Kind::Bind(n) = token.kind {
                self.push_sql(&sql[at..token.span.start]);
                self.push_bind(binds.get(n)?.clone());
                at = token.span.end;
            }
        }
        self.push_sql(&sql[at..tokens[range.end - 1].span.end]);
        Some(())
    }

    /// Appends `(<key>) IN ((?, ?), ...)` (without the parentheses for one column).
    pub(crate) fn push_key_list(&mut self, key: &str, keys: &[Vec<Bind>]) {
        let width = keys.first().map_or(1, Vec::len);
        if width == 1 {
            self.push_sql(&format!("{key} IN ("));
        } else {
            self.push_sql(&format!("({key}) IN ("));
        }
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                self.push_sql(", ");
            }
            if width > 1 {
                self.push_sql("(");
            }
            for (j, bind) in key.iter().enumerate() {
                if j > 0 {
                    self.push_sql(", ");
                }
                self.push_bind(bind.clone());
            }
            if width > 1 {
                self.push_sql(")");
            }
        }
        self.push_sql(")");
    }
}

/// [`RawQuery`] whose rows are read as SQL type `ST` instead of by the server's
/// column metadata.
pub struct Typed<ST>(RawQuery, std::marker::PhantomData<fn() -> ST>);

impl<ST> Typed<ST> {
    pub(crate) fn new(query: RawQuery) -> Self {
        Typed(query, std::marker::PhantomData)
    }
}

impl<ST> QueryId for Typed<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST> Query for Typed<ST> {
    type SqlType = ST;
}

impl<ST> QueryFragment<Mysql> for Typed<ST> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

impl QueryId for RawQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for RawQuery {
    type SqlType = Untyped;
}

impl QueryFragment<Mysql> for RawQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        if self.binds > CACHED_BINDS {
            out.unsafe_to_cache_prepared();
        }
        for part in &self.parts {
            match part {
                Part::Sql(sql) => out.push_sql(sql),
                Part::Bind(bind) => push_bind(&mut out, bind)?,
            }
        }
        Ok(())
    }
}

#[derive(diesel::sql_types::SqlType)]
#[diesel(mysql_type(name = "Bit"))]
struct BitSql;

#[derive(diesel::sql_types::SqlType)]
#[diesel(mysql_type(name = "Set"))]
struct SetSql;

#[derive(diesel::sql_types::SqlType)]
#[diesel(mysql_type(name = "Enum"))]
struct EnumSql;

/// Binds `bind` under the SQL type whose MySQL type is `bind.ty`, so that the
/// server reads the bytes exactly as Diesel wrote them.
fn push_bind<'b>(out: &mut AstPass<'_, 'b, Mysql>, bind: &'b Bind) -> QueryResult<()> {
    use diesel::mysql::sql_types::{Datetime, Unsigned};
    use sql_types::*;
    let value = &bind.value;
    match bind.ty {
        MysqlType::Tiny => out.push_bind_param::<Nullable<TinyInt>, _>(value),
        MysqlType::UnsignedTiny => out.push_bind_param::<Nullable<Unsigned<TinyInt>>, _>(value),
        MysqlType::Short => out.push_bind_param::<Nullable<SmallInt>, _>(value),
        MysqlType::UnsignedShort => out.push_bind_param::<Nullable<Unsigned<SmallInt>>, _>(value),
        MysqlType::Long => out.push_bind_param::<Nullable<Integer>, _>(value),
        MysqlType::UnsignedLong => out.push_bind_param::<Nullable<Unsigned<Integer>>, _>(value),
        MysqlType::LongLong => out.push_bind_param::<Nullable<BigInt>, _>(value),
        MysqlType::UnsignedLongLong => out.push_bind_param::<Nullable<Unsigned<BigInt>>, _>(value),
        MysqlType::Float => out.push_bind_param::<Nullable<Float>, _>(value),
        MysqlType::Double => out.push_bind_param::<Nullable<Double>, _>(value),
        MysqlType::Numeric => out.push_bind_param::<Nullable<Numeric>, _>(value),
        MysqlType::Time => out.push_bind_param::<Nullable<Time>, _>(value),
        MysqlType::Date => out.push_bind_param::<Nullable<Date>, _>(value),
        MysqlType::DateTime => out.push_bind_param::<Nullable<Datetime>, _>(value),
        MysqlType::Timestamp => out.push_bind_param::<Nullable<Timestamp>, _>(value),
        MysqlType::String => out.push_bind_param::<Nullable<Text>, _>(value),
        MysqlType::Bit => out.push_bind_param::<Nullable<BitSql>, _>(value),
        MysqlType::Set => out.push_bind_param::<Nullable<SetSql>, _>(value),
        MysqlType::Enum => out.push_bind_param::<Nullable<EnumSql>, _>(value),
        // `Blob`, and any type a later Diesel adds: bytes as they are.
        _ => out.push_bind_param::<Nullable<Binary>, _>(value),
    }
}

macro_rules! raw_to_sql {
    ($($ty:ty),* $(,)?) => {$(
        impl ToSql<$ty, Mysql> for Raw {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
                out.write_all(&self.0)?;
                Ok(IsNull::No)
            }
        }
    )*};
}

raw_to_sql!(
    sql_types::TinyInt,
    diesel::mysql::sql_types::Unsigned<sql_types::TinyInt>,
    sql_types::SmallInt,
    diesel::mysql::sql_types::Unsigned<sql_types::SmallInt>,
    sql_types::Integer,
    diesel::mysql::sql_types::Unsigned<sql_types::Integer>,
    sql_types::BigInt,
    diesel::mysql::sql_types::Unsigned<sql_types::BigInt>,
    sql_types::Float,
    sql_types::Double,
    sql_types::Numeric,
    sql_types::Time,
    sql_types::Date,
    diesel::mysql::sql_types::Datetime,
    sql_types::Timestamp,
    sql_types::Text,
    sql_types::Binary,
    BitSql,
    SetSql,
    EnumSql,
);

/// A key value compared across binds and rows, whose integer widths may differ.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyPart {
    Int(i128),
    Bytes(Vec<u8>),
    Null,
}

impl KeyPart {
    pub(crate) fn of(bind: &Bind) -> KeyPart {
        let Some(Raw(bytes)) = &bind.value else {
            return KeyPart::Null;
        };
        let signed = |n: usize| -> Option<i128> {
            let b = bytes.get(..n)?;
            Some(match n {
                1 => i8::from_ne_bytes(b.try_into().ok()?).into(),
                2 => i16::from_ne_bytes(b.try_into().ok()?).into(),
                4 => i32::from_ne_bytes(b.try_into().ok()?).into(),
                _ => i64::from_ne_bytes(b.try_into().ok()?).into(),
            })
        };
        let unsigned = |n: usize| -> Option<i128> {
            let b = bytes.get(..n)?;
            Some(match n {
                1 => u8::from_ne_bytes(b.try_into().ok()?).into(),
                2 => u16::from_ne_bytes(b.try_into().ok()?).into(),
                4 => u32::from_ne_bytes(b.try_into().ok()?).into(),
                _ => u64::from_ne_bytes(b.try_into().ok()?).into(),
            })
        };
        let int = match bind.ty {
            MysqlType::Tiny => signed(1),
            MysqlType::Short => signed(2),
            MysqlType::Long => signed(4),
            MysqlType::LongLong => signed(8),
            MysqlType::UnsignedTiny => unsigned(1),
            MysqlType::UnsignedShort => unsigned(2),
            MysqlType::UnsignedLong => unsigned(4),
            MysqlType::UnsignedLongLong => unsigned(8),
            _ => None,
        };
        int.map_or_else(|| KeyPart::Bytes(bytes.clone()), KeyPart::Int)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_numbered_outside_quotes_only() {
        let tokens =
            scan("UPDATE `a?` SET `x` = '?''?' WHERE (`a?`.`id` = ?) AND `y` = \"\\\"?\"").unwrap();
        let binds: Vec<_> = tokens
            .iter()
            .filter_map(|t| match t.kind {
                Kind::Bind(n) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(binds, vec![0]);
        assert_eq!(tokens[1].kind, Kind::Ident("a?".into()));
    }

    #[test]
    fn top_level_skips_subqueries() {
        let tokens =
            scan("DELETE FROM `t` WHERE `id` IN (SELECT `x` FROM `u` WHERE `y` = ?) LIMIT 2")
                .unwrap();
        let where_at = top_level(&tokens, 0, "WHERE").unwrap();
        assert_eq!(top_level(&tokens, where_at + 1, "WHERE"), None);
        assert!(top_level(&tokens, 0, "LIMIT").is_some());
    }

    #[test]
    fn comments_are_refused() {
        assert!(scan("DELETE FROM `t` -- x").is_none());
        assert!(scan("DELETE FROM `t` # x").is_none());
    }

    #[test]
    fn integer_keys_compare_across_widths() {
        let narrow = Bind {
            ty: MysqlType::Long,
            value: Some(Raw(7i32.to_ne_bytes().to_vec())),
        };
        let wide = Bind {
            ty: MysqlType::LongLong,
            value: Some(Raw(7i64.to_ne_bytes().to_vec())),
        };
        assert_eq!(KeyPart::of(&narrow), KeyPart::of(&wide));
    }
}
