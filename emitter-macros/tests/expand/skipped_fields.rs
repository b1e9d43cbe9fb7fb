// `#[emits(skip)]` fields: their columns are listed in SKIPPED and `redact` resets
// each to its type's Default (a renamed one through its column).
#[diesel(table_name = accounts)]
struct Account {
    id: i32,
    #[emits(skip)]
    password_hash: String,
    #[diesel(column_name = recovery_codes)]
    #[emits(skip)]
    codes: Option<String>,
}
