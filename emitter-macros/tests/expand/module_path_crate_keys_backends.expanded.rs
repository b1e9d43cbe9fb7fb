// #[derive(Emits)] on tests/expand/module_path_crate_keys_backends.rs, pretty-printed.
// Written by UPDATE_SNAPSHOTS=1 cargo test -p emitter-macros: do not edit.
const _: () = {
    #[automatically_derived]
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
    reexport::emitter::__register_postgres!(
        Membership, crate ::schema::memberships::table
    );
    reexport::emitter::__register_sqlite!(
        Membership, crate ::schema::memberships::table
    );
};
