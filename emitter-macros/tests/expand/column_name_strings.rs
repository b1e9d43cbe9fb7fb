// A `column_name` given as a string becomes an identifier, raw only for keywords.
#[diesel(table_name = users)]
struct User {
    #[diesel(column_name = "type")]
    kind: String,
    #[diesel(column_name = "full_name")]
    name: String,
}
