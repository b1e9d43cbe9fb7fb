//! Code generation for `#[derive(Emits)]`.
//!
//! The output is what a person would write by hand: one `impl Emits` whose column
//! names come from the table's column types, and one registration macro call per
//! backend, both inside `const _: () = { ... };` so nothing leaks into the user's
//! namespace. The impl is marked `#[automatically_derived]`, as the standard derives
//! mark theirs, so lints and coverage tools treat it as generated code.
//!
//! `tests/expand/` holds models and their expansions, pretty-printed: the tests below
//! compare them, and `UPDATE_SNAPSHOTS=1 cargo test -p emitter-macros` rewrites the
//! `.expanded.rs` files after an intended change.

use crate::attr::{Backend, Model, Skipped};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, LitStr};

/// Expands `#[derive(Emits)]` on `input`: the impl and its registration, or the
/// input's errors as `compile_error!`s at the user's spans.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    match Model::from_input(input) {
        Ok(model) => expand(&model),
        Err(errors) => errors.to_compile_error(),
    }
}

fn expand(model: &Model) -> TokenStream {
    let Model {
        ident,
        krate,
        table,
        ..
    } = model;

    let table_segment = &table
        .segments
        .last()
        .expect("a parsed path has at least one segment")
        .ident;
    let table_name = LitStr::new(&table_segment.unraw().to_string(), table_segment.span());

    // Naming a column through its type, spanned at the user's field (or
    // `column_name`), both checks at compile time that the table has that column,
    // with rustc's error at the field, and yields the column's SQL name.
    let column = |column: &Ident| {
        quote_spanned! {column.span()=>
            <#table::#column as #krate::__private::diesel::Column>::NAME
        }
    };
    let columns = model.columns.iter().map(column);
    let primary_key = model.primary_key.iter().map(column);
    let redaction = redaction(model, column);

    let registrations = match &model.backends {
        None => vec![quote!(#krate::__register!(#ident, #table::table);)],
        Some(backends) => backends
            .iter()
            .map(|backend| match backend {
                Backend::Postgres => quote!(#krate::__register_postgres!(#ident, #table::table);),
                Backend::Sqlite => quote!(#krate::__register_sqlite!(#ident, #table::table);),
                Backend::Mysql => quote!(#krate::__register_mysql!(#ident, #table::table);),
            })
            .collect(),
    };

    quote! {
        const _: () = {
            #[automatically_derived]
            impl #krate::Emits for #ident {
                const TABLE: &'static str = #table_name;
                const COLUMNS: &'static [&'static str] = &[
                    #(#columns,)*
                ];
                const PRIMARY_KEY: &'static [&'static str] = &[
                    #(#primary_key,)*
                ];
                #redaction
            }
            #(#registrations)*
        };
    }
}

/// `SKIPPED` and `redact` for the `#[emits(skip)]` fields; nothing when there are none,
/// so the trait's defaults apply.
fn redaction(model: &Model, column: impl Fn(&Ident) -> TokenStream) -> TokenStream {
    if model.skipped.is_empty() {
        return TokenStream::new();
    }
    let names = model.skipped.iter().map(|s| column(&s.column));
    // Spanned at the field's type, so a type without `Default` is reported there.
    let resets = model.skipped.iter().map(|Skipped { field, ty, .. }| {
        quote_spanned! {ty.span()=>
            self.#field = <#ty as ::core::default::Default>::default();
        }
    });
    quote! {
        const SKIPPED: &'static [&'static str] = &[
            #(#names,)*
        ];
        fn redact(&mut self) {
            #(#resets)*
        }
    }
}

#[cfg(test)]
mod tests {
    use super::derive;
    use std::path::{Path, PathBuf};
    use std::{env, fs};
    use syn::{parse_quote, DeriveInput};

    /// Each `tests/expand/NAME.rs` holds a model (as the derive receives it); its
    /// expansion, pretty-printed, must equal `tests/expand/NAME.expanded.rs`.
    /// `UPDATE_SNAPSHOTS=1` writes the snapshots instead of comparing them; a
    /// mismatch prints a line diff.
    #[test]
    fn expansions_match_their_snapshots() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
        let update = env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
        let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("a readable directory entry").path())
            .filter(|path| {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.ends_with(".rs") && !name.ends_with(".expanded.rs")
            })
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no models in {}", dir.display());

        let mut failures = Vec::new();
        for input in &inputs {
            let source = fs::read_to_string(input).expect("a readable model");
            let model: DeriveInput = syn::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}: not a struct: {e}", input.display()));
            let expanded = pretty(input, derive(&model));
            let snapshot = input.with_extension("expanded.rs");
            match fs::read_to_string(&snapshot) {
                Ok(expected) if expected == expanded => {}
                _ if update => fs::write(&snapshot, &expanded).expect("a writable snapshot"),
                Ok(expected) => failures.push(format!(
                    "{} differs (- snapshot, + expansion):\n{}",
                    snapshot.display(),
                    diff(&expected, &expanded)
                )),
                Err(e) => failures.push(format!("{}: {e}", snapshot.display())),
            }
        }
        assert!(
            failures.is_empty(),
            "{}\nIf the change is intended: UPDATE_SNAPSHOTS=1 cargo test -p emitter-macros",
            failures.join("\n")
        );
    }

    /// The expansion as rustfmt-like source, under a line naming its model.
    fn pretty(input: &Path, expansion: proc_macro2::TokenStream) -> String {
        let file: syn::File = syn::parse2(expansion)
            .unwrap_or_else(|e| panic!("{}: the expansion does not parse: {e}", input.display()));
        let name = input.file_name().expect("a file name").to_string_lossy();
        format!(
            "// #[derive(Emits)] on tests/expand/{name}, pretty-printed.\n\
             // Written by UPDATE_SNAPSHOTS=1 cargo test -p emitter-macros: do not edit.\n{}",
            prettyplease::unparse(&file)
        )
    }

    /// A line diff of `old` and `new` (longest common subsequence): `-` lines only in
    /// `old`, `+` lines only in `new`, unchanged lines indented.
    fn diff(old: &str, new: &str) -> String {
        let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
        // common[i][j]: length of the longest common subsequence of a[i..] and b[j..].
        let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                common[i][j] = if a[i] == b[j] {
                    common[i + 1][j + 1] + 1
                } else {
                    common[i + 1][j].max(common[i][j + 1])
                };
            }
        }
        let (mut i, mut j, mut out) = (0, 0, String::new());
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                out += &format!("  {}\n", a[i]);
                (i, j) = (i + 1, j + 1);
            } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
                out += &format!("- {}\n", a[i]);
                i += 1;
            } else {
                out += &format!("+ {}\n", b[j]);
                j += 1;
            }
        }
        out
    }

    #[test]
    fn the_diff_marks_removed_and_added_lines() {
        assert_eq!(diff("a\nb\nc\n", "a\nc\nd\n"), "  a\n- b\n  c\n+ d\n");
        assert_eq!(diff("a\nb\n", "a\nc\n"), "  a\n- b\n+ c\n");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let input = parse_quote! {
            #[diesel(check_for_backend(diesel::mariadb::Mariadb))]
            #[emits(rename = "x", crate = "a")]
            struct Bad<T> {
                #[diesel(embed)]
                inner: T,
            }
        };
        let out = derive(&input).to_string();
        for message in [
            "diesel-emitter supports the Pg, Sqlite and Mysql backends",
            "unknown #[emits] attribute `rename`",
            "does not support generic models",
            "supports plain column fields only",
            "needs #[diesel(table_name = ...)]",
        ] {
            assert!(out.contains(message), "{message} missing from {out}");
        }
        assert!(!out.contains("impl"), "{out}");
    }

    #[test]
    fn enums_unions_and_tuple_structs_are_rejected() {
        for input in [
            parse_quote!(
                #[diesel(table_name = users)]
                enum E {
                    A,
                }
            ),
            parse_quote!(#[diesel(table_name = users)] union U { a: i32 }),
            parse_quote!(
                #[diesel(table_name = users)]
                struct T(i32);
            ),
            parse_quote!(
                #[diesel(table_name = users)]
                struct U;
            ),
        ] {
            let out = derive(&input).to_string();
            assert!(out.contains("needs a struct with named fields"), "{out}");
        }
    }
}
