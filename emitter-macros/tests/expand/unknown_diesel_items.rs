// Diesel attributes the derive does not read are skipped, whatever their syntax.
#[diesel(belongs_to(Group, foreign_key = group_id), postgres_type(name = "x"), aggregate)]
#[diesel(sql_type = diesel::sql_types::Integer, table_name = users, check_for_backend(disable = true))]
struct User {
    #[diesel(serialize_as = Wrapper<Vec<i32>, i32>, select_expression_type = X, skip_insertion)]
    id: i32,
    #[diesel(treat_none_as_null = true, sql_type = Option<Text>, future_key(a = 1 < 2), other = a < b)]
    name: Option<String>,
}
