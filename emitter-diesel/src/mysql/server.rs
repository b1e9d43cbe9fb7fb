//! What the capture needs to know of the server, asked once per connection: whether
//! it is a MariaDB with `INSERT/DELETE ... RETURNING`, and whether InnoDB hands a
//! multi-row insert consecutive keys.

use crate::connection::EmittingConnection;
use diesel::mysql::MysqlConnection;
use diesel::query_dsl::RunQueryDsl;
use diesel::result::QueryResult;

/// What a connection learned about its server at its first captured write.
#[derive(Clone, Copy, Debug)]
pub(super) struct Server {
    /// MariaDB 10.5+: `INSERT ... RETURNING` and `DELETE ... RETURNING`.
    pub(super) returning: bool,
    /// `innodb_autoinc_lock_mode` is 0 or 1: a simple multi-row insert gets
    /// consecutive generated keys.
    pub(super) consecutive_keys: bool,
}

#[derive(diesel::QueryableByName)]
struct ServerRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    lock_mode: i64,
}

pub(super) fn server(conn: &mut EmittingConnection<MysqlConnection>) -> QueryResult<Server> {
    if let Some(server) = conn.capture_state.server {
        return Ok(server);
    }
    let rows: Vec<ServerRow> = diesel::sql_query(
        "SELECT VERSION() AS version, CAST(@@innodb_autoinc_lock_mode AS SIGNED) AS lock_mode",
    )
    .load(&mut conn.inner)?;
    let row = rows
        .into_iter()
        .next()
        .ok_or(diesel::result::Error::NotFound)?;
    let server = Server {
        returning: mariadb_with_returning(&row.version),
        consecutive_keys: row.lock_mode <= 1,
    };
    tracing::debug!(version = %row.version, lock_mode = row.lock_mode, ?server, "MySQL capture");
    conn.capture_state.server = Some(server);
    Ok(server)
}

/// MariaDB 10.5 added `INSERT/DELETE ... RETURNING`.
fn mariadb_with_returning(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return false;
    }
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (10, 5)
}

impl EmittingConnection<MysqlConnection> {
    /// Captures as on MySQL 8, without RETURNING, even on MariaDB: every write is
    /// locked and read back by key. For tests of that path on a MariaDB server.
    #[doc(hidden)]
    pub fn capture_without_returning(&mut self) {
        self.capture_state.without_returning = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mariadb_10_5_and_later_has_returning() {
        assert!(mariadb_with_returning("10.11.19-MariaDB-0+deb12u1"));
        assert!(mariadb_with_returning("11.4.2-MariaDB"));
        assert!(!mariadb_with_returning("10.4.34-MariaDB"));
        assert!(!mariadb_with_returning("8.0.36"));
    }
}
