// #[derive(Emits)] on tests/expand/skipped_fields.rs, pretty-printed.
// Written by UPDATE_SNAPSHOTS=1 cargo test -p emitter-macros: do not edit.
const _: () = {
    #[automatically_derived]
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
