//! Reading a `#[derive(Emits)]` input into a [`Model`].
//!
//! Diesel owns the `#[diesel(...)]` attribute and keeps adding keys to it, so this
//! module picks out the few keys it needs and steps over everything else; Diesel's
//! own derives report what is wrong with the keys they own. Problems are collected
//! rather than returned at the first one, so a user sees every mistake in one build.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::discouraged::Speculative;
use syn::parse::ParseStream;
use syn::punctuated::Punctuated;
use syn::{
    parenthesized, parse_quote, Attribute, Data, DeriveInput, Expr, Field, Fields, Ident, LitBool,
    LitStr, Path, Token, Type,
};

/// What the derive needs to know about a model, with every name still carrying the
/// span the user wrote it at, so that generated code fails at the user's tokens.
pub(crate) struct Model {
    /// The model type.
    pub ident: Ident,
    /// The path of the facade crate: `::diesel_emitter` unless `#[emits(crate = "...")]`.
    pub krate: Path,
    /// The `table!` module, as written in `#[diesel(table_name = ...)]`.
    pub table: Path,
    /// One column per field, in field order: the field's name or its `column_name`.
    pub columns: Vec<Ident>,
    /// The fields marked `#[emits(skip)]`, kept out of payloads that leave the process.
    pub skipped: Vec<Skipped>,
    /// The primary key's columns: `primary_key(...)`, else `id`.
    pub primary_key: Vec<Ident>,
    /// The backends to register with: `None` means every backend the facade enables.
    pub backends: Option<Vec<Backend>>,
}

/// A field marked `#[emits(skip)]`.
pub(crate) struct Skipped {
    /// The field, reset to its type's `Default` before the row leaves the process.
    pub field: Ident,
    /// Its column.
    pub column: Ident,
    /// Its type, where a missing `Default` is reported.
    pub ty: Type,
}

/// A backend named in `#[diesel(check_for_backend(...))]` that events can be captured on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// `diesel::pg::Pg`.
    Postgres,
    /// `diesel::sqlite::Sqlite`.
    Sqlite,
    /// `diesel::mysql::Mysql`.
    Mysql,
}

const MISSING_TABLE_NAME: &str =
    "#[derive(Emits)] needs #[diesel(table_name = ...)] naming the table whose writes it emits";
const NEEDS_NAMED_FIELDS: &str =
    "#[derive(Emits)] needs a struct with named fields, one per column";
const NO_GENERICS: &str = "#[derive(Emits)] does not support generic models";
const PLAIN_COLUMNS_ONLY: &str = "#[derive(Emits)] supports plain column fields only; `embed`/`select_expression` are not supported yet";
const UNSUPPORTED_BACKEND: &str = "diesel-emitter supports the Pg, Sqlite and Mysql backends";

impl Model {
    /// Reads `input`, or returns every problem found in it as one combined error.
    pub(crate) fn from_input(input: &DeriveInput) -> syn::Result<Model> {
        let mut errors = Errors::default();

        let krate = parse_emits_attrs(&input.attrs, &mut errors);
        let diesel = parse_struct_diesel_attrs(&input.attrs, &mut errors);

        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(fields) => Some(&fields.named),
                Fields::Unnamed(_) | Fields::Unit => {
                    let head = tokens(&[&data.struct_token, &input.ident]);
                    errors.push(syn::Error::new_spanned(head, NEEDS_NAMED_FIELDS));
                    None
                }
            },
            Data::Enum(data) => {
                errors.push(syn::Error::new_spanned(
                    data.enum_token,
                    "#[derive(Emits)] needs a struct with named fields, one per column, not an enum",
                ));
                None
            }
            Data::Union(data) => {
                errors.push(syn::Error::new_spanned(
                    data.union_token,
                    "#[derive(Emits)] needs a struct with named fields, one per column, not a union",
                ));
                None
            }
        };

        if !input.generics.params.is_empty() {
            errors.push(syn::Error::new_spanned(&input.generics, NO_GENERICS));
        }

        let mut columns = Vec::new();
        let mut skipped = Vec::new();
        for field in fields.into_iter().flatten() {
            let skip = field_skip(field, &mut errors);
            if let Some(column) = field_column(field, &mut errors) {
                if let (true, Some(ident)) = (skip, &field.ident) {
                    skipped.push(Skipped {
                        field: ident.clone(),
                        column: column.clone(),
                        ty: field.ty.clone(),
                    });
                }
                columns.push(column);
            }
        }

        // An enum or union needs rewriting as a struct first; asking it for a table
        // as well would only be noise.
        let is_struct = matches!(input.data, Data::Struct(_));
        if diesel.table.is_none() && is_struct {
            errors.push(syn::Error::new(input.ident.span(), MISSING_TABLE_NAME));
        }

        errors.finish()?;
        Ok(Model {
            ident: input.ident.clone(),
            krate: krate.unwrap_or_else(|| parse_quote!(::diesel_emitter)),
            table: diesel
                .table
                .expect("a missing table_name is reported above"),
            columns,
            skipped,
            // The default key is blamed on the model: adding `primary_key(...)` to it is the fix.
            primary_key: diesel
                .primary_key
                .unwrap_or_else(|| vec![Ident::new("id", input.ident.span())]),
            backends: diesel.backends,
        })
    }
}

/// Errors gathered over a whole input, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Joins tokens so that one error can underline all of them (`struct Name`).
fn tokens(parts: &[&dyn ToTokens]) -> TokenStream {
    let mut out = TokenStream::new();
    for part in parts {
        part.to_tokens(&mut out);
    }
    out
}

/// Reads `#[emits(...)]`, returning the `crate = "..."` path if one is given.
fn parse_emits_attrs(attrs: &[Attribute], errors: &mut Errors) -> Option<Path> {
    let mut krate: Option<Path> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("emits")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                // Parsed from the literal, the path's tokens carry its span, so a wrong
                // path is reported at the string the user wrote.
                let path: Path = lit.parse()?;
                if krate.replace(path).is_some() {
                    errors.push(meta.error("duplicate #[emits(crate = ...)]"));
                }
            } else {
                let key = meta.path.to_token_stream().to_string().replace(' ', "");
                errors.push(meta.error(format!(
                    "unknown #[emits] attribute `{key}`; on the struct the only one is `crate = \"path::to::diesel_emitter\"`"
                )));
                // Step over its value so the keys after it are still checked.
                skip_item(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
    krate
}

/// The struct-level `#[diesel(...)]` keys the derive uses.
#[derive(Default)]
struct StructAttrs {
    table: Option<Path>,
    primary_key: Option<Vec<Ident>>,
    backends: Option<Vec<Backend>>,
}

fn parse_struct_diesel_attrs(attrs: &[Attribute], errors: &mut Errors) -> StructAttrs {
    let mut out = StructAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("diesel")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table_name") {
                let table: Path = meta.value()?.parse()?;
                if out.table.is_some() {
                    // Selectable takes one table too; with two, which one is meant is a guess.
                    errors.push(meta.error("expected a single table name attribute"));
                } else {
                    out.table = Some(table);
                }
            } else if meta.path.is_ident("primary_key") {
                let content;
                parenthesized!(content in meta.input);
                let keys = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                // As in Diesel, the last `primary_key` wins.
                out.primary_key = Some(keys.into_iter().collect());
            } else if meta.path.is_ident("check_for_backend") {
                out.backends = parse_check_for_backend(meta.input, errors)?;
            } else {
                skip_item(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
    out
}

/// Reads the parentheses of `check_for_backend`: a list of backend paths, or
/// `disable = true`, which (like an empty list) leaves every backend registered.
fn parse_check_for_backend(
    input: ParseStream,
    errors: &mut Errors,
) -> syn::Result<Option<Vec<Backend>>> {
    let content;
    parenthesized!(content in input);
    let disable = content
        .fork()
        .parse::<Ident>()
        .is_ok_and(|key| key == "disable");
    if disable && content.peek2(Token![=]) {
        content.parse::<Ident>()?;
        content.parse::<Token![=]>()?;
        content.parse::<LitBool>()?;
        return Ok(None);
    }
    let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
    let mut backends = Vec::new();
    for path in &paths {
        let last = path.segments.last().map(|s| s.ident.to_string());
        let backend = match last.as_deref() {
            Some("Pg") => Backend::Postgres,
            Some("Sqlite") => Backend::Sqlite,
            Some("Mysql") => Backend::Mysql,
            _ => {
                errors.push(syn::Error::new_spanned(path, UNSUPPORTED_BACKEND));
                continue;
            }
        };
        // A model registered twice for one backend would emit every event twice.
        if !backends.contains(&backend) {
            backends.push(backend);
        }
    }
    Ok(if paths.is_empty() {
        None
    } else {
        Some(backends)
    })
}

/// Reads a field's `#[emits(...)]`: whether it says `skip`.
fn field_skip(field: &Field, errors: &mut Errors) -> bool {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("emits")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
            } else {
                let key = meta.path.to_token_stream().to_string().replace(' ', "");
                errors.push(meta.error(format!(
                    "unknown #[emits] attribute `{key}`; on a field the only one is `skip`"
                )));
                skip_item(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
    skip
}

/// The column a field reads, or `None` (with an error pushed) for a field that is not
/// a plain column.
fn field_column(field: &Field, errors: &mut Errors) -> Option<Ident> {
    let mut column = field.ident.clone()?;
    let mut plain = true;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("diesel")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("column_name") {
                // As in Diesel, the last `column_name` wins.
                column = parse_column_name(meta.value()?)?;
            } else if meta.path.is_ident("embed") || meta.path.is_ident("select_expression") {
                if plain {
                    errors.push(syn::Error::new_spanned(attr, PLAIN_COLUMNS_ONLY));
                }
                plain = false;
                skip_item(&meta)?;
            } else {
                skip_item(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
    plain.then_some(column)
}

/// Reads a `column_name` value: an identifier, or (as Diesel allows) a string that
/// becomes one, spanned at the string.
fn parse_column_name(input: ParseStream) -> syn::Result<Ident> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let name = lit.value();
        let mut ident = syn::parse_str::<Ident>(&name)
            .or_else(|_| syn::parse_str::<Ident>(&format!("r#{name}")))
            .map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    format!("expected a column name, found `{name}`"),
                )
            })?;
        ident.set_span(lit.span());
        Ok(ident)
    } else {
        // A keyword would not make a path; Diesel rejects it too and takes `r#type`.
        input.parse()
    }
}

/// Steps over the rest of a `#[diesel(...)]` item the derive does not use: nothing,
/// `= value`, or a parenthesized list.
fn skip_item(meta: &ParseNestedMeta) -> syn::Result<()> {
    let input = meta.input;
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        skip_value(input)
    } else if !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>().map(drop)
    } else {
        Ok(())
    }
}

/// Steps over a value up to the next top-level comma.
///
/// A value may be a type with commas inside angle brackets (`deserialize_as =
/// HashMap<K, V>`) or an expression, and a comma inside `<...>` does not end a token
/// tree, so it is tried as a type, then as an expression, and only then skipped token
/// by token with a count of open angle brackets.
fn skip_value(input: ParseStream) -> syn::Result<()> {
    fn at_item_end(input: ParseStream) -> bool {
        input.is_empty() || input.peek(Token![,])
    }
    let fork = input.fork();
    if fork.parse::<Type>().is_ok() && at_item_end(&fork) {
        input.advance_to(&fork);
        return Ok(());
    }
    let fork = input.fork();
    if fork.parse::<Expr>().is_ok() && at_item_end(&fork) {
        input.advance_to(&fork);
        return Ok(());
    }
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut depth = 0usize;
        let mut after_arrow_head = false;
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt {
                match p.as_char() {
                    ',' if depth == 0 => break,
                    '<' => depth += 1,
                    // `->` and `=>` are not closing brackets.
                    '>' if !after_arrow_head => depth = depth.saturating_sub(1),
                    _ => {}
                }
                after_arrow_head =
                    matches!(p.as_char(), '-' | '=') && p.spacing() == proc_macro2::Spacing::Joint;
            } else {
                after_arrow_head = false;
            }
            rest = next;
        }
        Ok(((), rest))
    })
}
