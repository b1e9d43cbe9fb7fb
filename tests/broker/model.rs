//! The `users` and `posts` models and a SQLite database file that has them.

use super::*;

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
        email -> Text,
        active -> Bool,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub active: bool,
}

// A second model, for tests that need two tables.
diesel::table! {
    posts (id) {
        id -> Integer,
        title -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = posts)]
pub struct Post {
    pub id: i32,
    pub title: String,
}

pub const POSTS_DDL: &str =
    "CREATE TABLE posts (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL)";

pub type Conn = EmittingConnection<SqliteConnection>;

pub const USERS_DDL: &str = "CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT 1
)";

/// A SQLite file (WAL) in a temp dir of its own, with the `users` table.
pub struct Db {
    pub path: String,
    _dir: TempDir,
}

impl Db {
    pub fn new(tag: &str) -> Db {
        let dir = TempDir::new(&format!("db-{tag}"));
        let path = dir.join("test.db").display().to_string();
        let mut plain = SqliteConnection::establish(&path).expect("open the SQLite file");
        plain
            .batch_execute(&format!("PRAGMA journal_mode = WAL; {USERS_DDL};"))
            .expect("create the users table");
        Db { path, _dir: dir }
    }

    /// An emitting connection for `emitter`.
    pub fn conn(&self, emitter: &Emitter) -> Conn {
        let mut conn = EmittingConnection::new(
            SqliteConnection::establish(&self.path).expect("open the SQLite file"),
            emitter.clone(),
        );
        // batch_execute is never captured.
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA synchronous = OFF;")
            .expect("pragmas");
        conn
    }
}

/// Inserts a user and returns the row as the database stored it.
pub fn insert(conn: &mut Conn, name: &str, active: bool) -> User {
    diesel::insert_into(users::table)
        .values((
            users::name.eq(name),
            users::email.eq(format!("{name}@example.com")),
            users::active.eq(active),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .expect("insert a user")
}

/// Inserts a post (the `posts` table must exist: [`POSTS_DDL`]).
pub fn insert_post(conn: &mut Conn, title: &str) {
    diesel::insert_into(posts::table)
        .values(posts::title.eq(title))
        .execute(conn)
        .expect("insert a post");
}
