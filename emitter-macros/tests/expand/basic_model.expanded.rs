// #[derive(Emits)] on tests/expand/basic_model.rs, pretty-printed.
// Written by UPDATE_SNAPSHOTS=1 cargo test -p emitter-macros: do not edit.
const _: () = {
    #[automatically_derived]
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
