// A table named by a module path, a composite key, a re-exported facade
// (`#[emits(crate = ...)]`) and registrations with the listed backends only.
#[diesel(table_name = crate::schema::memberships, check_for_backend(diesel::pg::Pg, Sqlite))]
#[diesel(primary_key(user_id, group_id), treat_none_as_null = true)]
#[emits(crate = "reexport::emitter")]
struct Membership {
    user_id: i32,
    #[diesel(deserialize_as = std::collections::HashMap<String, i32>, column_name = "group_id")]
    group: i32,
}
