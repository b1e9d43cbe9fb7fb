//! Code generation for `#[derive(Emits)]`.
//!
//! The output is what a person would write by hand: one `impl Emits` whose column
//! names come from the table's column types, and one registration macro call per
//! backend, both inside `const _: () = { ... };` so nothing leaks into the user's
//! namespace.

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
    use quote::quote;
    use syn::parse_quote;

    #[test]
    fn basic_model_expands_to_an_impl_and_one_registration() {
        let input = parse_quote! {
            #[derive(Queryable, Selectable, Emits)]
            #[diesel(table_name = users)]
            struct User {
                id: i32,
                #[diesel(column_name = email)]
                mail: String,
                name: String,
                active: bool,
            }
        };
        let expected = quote! {
            const _: () = {
                impl ::diesel_emitter::Emits for User {
                    const TABLE: &'static str = "users";
                    const COLUMNS: &'static [&'static str] = &[
                        <users::id as ::diesel_emitter::__private::diesel::Column>::NAME,
                        <users::email as ::diesel_emitter::__private::diesel::Column>::NAME,
                        <users::name as ::diesel_emitter::__private::diesel::Column>::NAME,
                        <users::active as ::diesel_emitter::__private::diesel::Column>::NAME,
                    ];
                    const PRIMARY_KEY: &'static [&'static str] = &[
                        <users::id as ::diesel_emitter::__private::diesel::Column>::NAME,
                    ];
                }
                ::diesel_emitter::__register!(User, users::table);
            };
        };
        assert_eq!(derive(&input).to_string(), expected.to_string());
    }

    #[test]
    fn skipped_fields_get_their_columns_listed_and_a_redact_that_resets_them() {
        let input = parse_quote! {
            #[diesel(table_name = accounts)]
            struct Account {
                id: i32,
                #[emits(skip)]
                password_hash: String,
                #[diesel(column_name = recovery_codes)]
                #[emits(skip)]
                codes: Option<String>,
            }
        };
        let expected = quote! {
            const _: () = {
                impl ::diesel_emitter::Emits for Account {
                    const TABLE: &'static str = "accounts";
                    const COLUMNS: &'static [&'static str] = &[
                        <accounts::id as ::diesel_emitter::__private::diesel::Column>::NAME,
                        <accounts::password_hash as ::diesel_emitter::__private::diesel::Column>::NAME,
                        <accounts::recovery_codes as ::diesel_emitter::__private::diesel::Column>::NAME,
                    ];
                    const PRIMARY_KEY: &'static [&'static str] = &[
                        <accounts::id as ::diesel_emitter::__private::diesel::Column>::NAME,
                    ];
                    const SKIPPED: &'static [&'static str] = &[
                        <accounts::password_hash as ::diesel_emitter::__private::diesel::Column>::NAME,
                        <accounts::recovery_codes as ::diesel_emitter::__private::diesel::Column>::NAME,
                    ];
                    fn redact(&mut self) {
                        self.password_hash = <String as ::core::default::Default>::default();
                        self.codes = <Option<String> as ::core::default::Default>::default();
                    }
                }
                ::diesel_emitter::__register!(Account, accounts::table);
            };
        };
        assert_eq!(derive(&input).to_string(), expected.to_string());
    }

    #[test]
    fn module_path_crate_override_keys_and_backends() {
        let input = parse_quote! {
            #[diesel(table_name = crate::schema::memberships, check_for_backend(diesel::pg::Pg, Sqlite))]
            #[diesel(primary_key(user_id, group_id), treat_none_as_null = true)]
            #[emits(crate = "reexport::emitter")]
            struct Membership {
                user_id: i32,
                #[diesel(deserialize_as = std::collections::HashMap<String, i32>, column_name = "group_id")]
                group: i32,
            }
        };
        let expected = quote! {
            const _: () = {
                impl reexport::emitter::Emits for Membership {
                    const TABLE: &'static str = "memberships";
                    const COLUMNS: &'static [&'static str] = &[
                        <crate::schema::memberships::user_id as reexport::emitter::__private::diesel::Column>::NAME,
                        <crate::schema::memberships::group_id as reexport::emitter::__private::diesel::Column>::NAME,
                    ];
                    const PRIMARY_KEY: &'static [&'static str] = &[
                        <crate::schema::memberships::user_id as reexport::emitter::__private::diesel::Column>::NAME,
                        <crate::schema::memberships::group_id as reexport::emitter::__private::diesel::Column>::NAME,
                    ];
                }
                reexport::emitter::__register_postgres!(Membership, crate::schema::memberships::table);
                reexport::emitter::__register_sqlite!(Membership, crate::schema::memberships::table);
            };
        };
        assert_eq!(derive(&input).to_string(), expected.to_string());
    }

    #[test]
    fn unknown_diesel_items_are_skipped() {
        let input = parse_quote! {
            #[diesel(belongs_to(Group, foreign_key = group_id), postgres_type(name = "x"), aggregate)]
            #[diesel(sql_type = diesel::sql_types::Integer, table_name = users, check_for_backend(disable = true))]
            struct User {
                #[diesel(serialize_as = Wrapper<Vec<i32>, i32>, select_expression_type = X, skip_insertion)]
                id: i32,
                #[diesel(treat_none_as_null = true, sql_type = Option<Text>, future_key(a = 1 < 2), other = a < b)]
                name: Option<String>,
            }
        };
        let out = derive(&input).to_string();
        assert!(!out.contains("compile_error"), "{out}");
        assert!(
            out.contains(":: __register ! (User , users :: table)"),
            "{out}"
        );
        assert!(out.contains("< users :: name as"), "{out}");
    }

    #[test]
    fn a_column_name_string_becomes_an_identifier_raw_only_for_keywords() {
        let input = parse_quote! {
            #[diesel(table_name = users)]
            struct User {
                #[diesel(column_name = "type")]
                kind: String,
                #[diesel(column_name = "full_name")]
                name: String,
            }
        };
        let out = derive(&input).to_string();
        assert!(out.contains("< users :: r#type as"), "{out}");
        assert!(out.contains("< users :: full_name as"), "{out}");
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
