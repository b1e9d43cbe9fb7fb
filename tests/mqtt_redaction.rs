//! `#[emits(skip)]`: a field marked so never leaves the process. Checked on the wire
//! (what `mosquitto_sub` sees on the shared broker) and at a remote listener.

mod broker;

use broker::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    accounts (id) {
        id -> Integer,
        login -> Text,
        password_hash -> Text,
        recovery_code -> Nullable<Text>,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = accounts)]
struct Account {
    id: i32,
    login: String,
    #[emits(skip)]
    password_hash: String,
    #[emits(skip)]
    recovery_code: Option<String>,
}

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0LXNhbHQ";
const CODE: &str = "RECOVERY-1234-5678";

fn accounts_conn(dir: &TempDir, emitter: &Emitter) -> EmittingConnection<SqliteConnection> {
    let mut conn = EmittingConnection::new(
        SqliteConnection::establish(&dir.join("accounts.db").display().to_string())
            .expect("open the SQLite file"),
        emitter.clone(),
    );
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, login TEXT NOT NULL,
         password_hash TEXT NOT NULL, recovery_code TEXT)",
    )
    .expect("create accounts");
    conn
}

fn insert_account(conn: &mut EmittingConnection<SqliteConnection>) -> Account {
    diesel::insert_into(accounts::table)
        .values((
            accounts::login.eq("ada"),
            accounts::password_hash.eq(HASH),
            accounts::recovery_code.eq(CODE),
        ))
        .returning(Account::as_returning())
        .get_result(conn)
        .expect("insert an account")
}

#[test]
fn skipped_fields_never_appear_in_the_published_payload() {
    let prefix = unique_prefix("redaction_wire");
    let sub = Sub::start(SHARED_PORT, &prefix, &["-F", "%t\t%p"]);
    let a = shared_node("a", &prefix);
    connected(&[&a]);
    let dir = TempDir::new("redaction_wire");
    let mut conn = accounts_conn(&dir, &a);

    insert_account(&mut conn);
    let line = sub.expect_line();
    let (topic, payload) = line.split_once('\t').expect("topic, tab, payload");
    assert_eq!(topic, format!("{prefix}/accounts/insert"));

    assert!(!payload.contains(HASH), "the hash leaked: {payload}");
    assert!(
        !payload.contains(CODE),
        "the recovery code leaked: {payload}"
    );
    let envelope: serde_json::Value = serde_json::from_str(payload).expect("JSON");
    assert_eq!(
        envelope["row"],
        serde_json::json!({"id": 1, "login": "ada", "password_hash": "", "recovery_code": null}),
        "skipped fields travel as their Default"
    );
    shutdown_all(&[&a]);
}

#[test]
fn remote_listeners_see_default_where_local_listeners_see_the_stored_value() {
    let prefix = unique_prefix("redaction_remote");
    let a = shared_node("a", &prefix);
    let b = shared_node("b", &prefix);
    let local = a.on::<Account>().subscribe();
    let remote = b.on::<Account>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let dir = TempDir::new("redaction_remote");
    let mut conn = accounts_conn(&dir, &a);

    let stored = insert_account(&mut conn);
    let here = recv(&local);
    let there = recv(&remote);

    assert_eq!(here.row, stored, "local events carry the row as stored");
    assert_eq!(
        there.row,
        Account {
            password_hash: String::new(),
            recovery_code: None,
            ..stored
        }
    );
    shutdown_all(&[&a, &b]);
}
