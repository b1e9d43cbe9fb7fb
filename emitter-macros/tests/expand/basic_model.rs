// A model with a renamed column: one impl, one registration with every backend.
#[derive(Queryable, Selectable, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    #[diesel(column_name = email)]
    mail: String,
    name: String,
    active: bool,
}
