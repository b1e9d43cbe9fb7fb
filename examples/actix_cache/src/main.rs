//! An Actix-web service with a per-server cache of users, kept fresh by diesel-emitter.
//!
//! Every server answers `GET /users/{id}` from its own memory. A write through any
//! server commits to the shared PostgreSQL database; diesel-emitter then publishes a
//! `User` event over MQTT, and each server's listener drops that user from its cache,
//! so the next read on any server goes to the database and sees the new row.
//!
//! Routes: `POST /users` (`{"name", "email"}`), `GET /users/{id}` (header `x-cache:
//! hit|miss`), `PUT /users/{id}` (`{"name"?, "email"?}`), `DELETE /users/{id}`.
//!
//! Configuration (a flag wins over its environment variable):
//!
//! | flag | variable | default |
//! |---|---|---|
//! | | `DATABASE_URL` | required |
//! | | `MQTT_URL` | `mqtt://127.0.0.1:1883` |
//! | `--host` | `HOST` | `127.0.0.1` |
//! | `--port` | `PORT` | `8080` (`0`: any free port) |
//! | `--node` | `NODE_ID` | `actix-cache-<pid>` |
//! | `--prefix` | `MQTT_PREFIX` | `diesel/events` |
//! | `--pool-size` | `POOL_SIZE` | `10` |
//!
//! Once it listens and its broker subscription is in place it prints
//! `READY http://<address>` on stdout.

use actix_web::{delete, get, post, put, web, App, HttpResponse, HttpServer, ResponseError};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PoolError};
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::process::ExitCode;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

diesel::table! {
    users (id) {
        id -> Int4,
        name -> Text,
        email -> Text,
    }
}

/// The advisory lock under which servers create the schema one at a time.
const SCHEMA_LOCK: i64 = 0x6163_7469_785f_6361; // "actix_ca"

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL
)";

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    name: String,
    email: String,
}

#[derive(Deserialize, Insertable)]
#[diesel(table_name = users)]
struct NewUser {
    name: String,
    email: String,
}

/// A partial update: absent fields keep their value.
#[derive(Deserialize, AsChangeset)]
#[diesel(table_name = users)]
struct UserChanges {
    name: Option<String>,
    email: Option<String>,
}

type DbPool = Pool<ConnectionManager<EmittingConnection<PgConnection>>>;

// ---------------------------------------------------------------- configuration

const USAGE: &str = "usage: actix-cache [--host ADDR] [--port N] [--node ID] [--prefix TOPIC] \
                     [--pool-size N]  (DATABASE_URL and MQTT_URL from the environment)";

struct Config {
    host: String,
    port: u16,
    database_url: String,
    mqtt_url: String,
    node_id: String,
    topic_prefix: String,
    pool_size: u32,
}

impl Config {
    fn load() -> Result<Config, String> {
        let mut flags = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .filter(|name| ["host", "port", "node", "prefix", "pool-size"].contains(name))
                .ok_or_else(|| format!("unknown argument {arg}\n{USAGE}"))?
                .to_owned();
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            flags.insert(name, value);
        }
        let get =
            |flag: &str, var: &str| flags.get(flag).cloned().or_else(|| std::env::var(var).ok());
        Ok(Config {
            host: get("host", "HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: get("port", "PORT")
                .map_or(Ok(8080), |p| p.parse())
                .map_err(|_| "the port must be a number from 0 to 65535")?,
            // URLs may carry passwords: environment only, since arguments show in `ps`.
            database_url: std::env::var("DATABASE_URL")
                .map_err(|_| format!("DATABASE_URL is not set\n{USAGE}"))?,
            mqtt_url: std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into()),
            node_id: get("node", "NODE_ID")
                .unwrap_or_else(|| format!("actix-cache-{}", std::process::id())),
            topic_prefix: get("prefix", "MQTT_PREFIX").unwrap_or_else(|| "diesel/events".into()),
            pool_size: get("pool-size", "POOL_SIZE")
                .map_or(Ok(10), |n| n.parse())
                .ok()
                .filter(|&n| n > 0)
                .ok_or("the pool size must be a positive number")?,
        })
    }
}

// ---------------------------------------------------------------- the cache

/// This server's copy of the users it has served.
///
/// Invalidations arrive on the listener's thread, so one can overtake a fill: a
/// handler reads the old row, the event for the new row arrives and finds nothing
/// to remove, then the handler caches the old row for good. So a handler takes a
/// lease before it reads the database, an invalidation voids the lease, and only
/// a fill with a valid lease is kept.
#[derive(Default)]
struct UserCache {
    inner: RwLock<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<i32, Entry>,
    last_lease: u64,
    /// The emitter's `broker_reconnects` when the entries were cached.
    broker_reconnects: u64,
}

enum Entry {
    Cached(User),
    /// A database read under this lease is under way.
    Loading(u64),
}

impl UserCache {
    fn get(&self, id: i32) -> Option<User> {
        match self.read().entries.get(&id) {
            Some(Entry::Cached(user)) => Some(user.clone()),
            _ => None,
        }
    }

    /// Taken before reading the database; handed back to [`fill`](Self::fill).
    fn lease(&self, id: i32) -> u64 {
        let mut inner = self.write();
        inner.last_lease += 1;
        let lease = inner.last_lease;
        inner.entries.insert(id, Entry::Loading(lease));
        lease
    }

    /// Ends a read begun with `lease`: caches `user` if nothing invalidated `id`
    /// meanwhile (no user: nothing to cache; misses are not cached).
    fn fill(&self, id: i32, lease: u64, user: Option<User>) {
        let mut inner = self.write();
        if matches!(inner.entries.get(&id), Some(Entry::Loading(l)) if *l == lease) {
            match user {
                Some(user) => inner.entries.insert(id, Entry::Cached(user)),
                None => inner.entries.remove(&id),
            };
        }
    }

    fn invalidate(&self, id: i32) {
        self.write().entries.remove(&id);
    }

    /// Forgets every entry if the broker connection dropped since the last call:
    /// events published while this server was away never reach it, so any entry
    /// may be stale.
    fn forget_all_after_reconnect(&self, broker_reconnects: u64) {
        if self.read().broker_reconnects == broker_reconnects {
            return;
        }
        let mut inner = self.write();
        if inner.broker_reconnects != broker_reconnects {
            tracing::warn!(
                entries = inner.entries.len(),
                "the broker connection dropped since the last request; cache cleared"
            );
            inner.entries.clear();
            inner.broker_reconnects = broker_reconnects;
        }
    }

    // Nothing panics while holding the lock, and the map stays valid even if it did.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

struct AppState {
    pool: DbPool,
    cache: Arc<UserCache>,
    emitter: Emitter,
}

impl AppState {
    /// Whether cached entries may be served and new ones added: only while the
    /// broker connection is up and subscribed, since invalidations arrive through it.
    fn cache_usable(&self) -> bool {
        self.cache
            .forget_all_after_reconnect(self.emitter.stats().broker_reconnects);
        self.emitter.wait_connected(Duration::ZERO).is_ok()
    }
}

// ---------------------------------------------------------------- handlers
//
// Diesel is blocking: every handler does its database work on Actix's blocking
// thread pool (`web::block`), never on the async worker threads.

#[post("/users")]
async fn create_user(
    state: web::Data<AppState>,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    let pool = state.pool.clone();
    let user = web::block(move || -> Result<User, ApiError> {
        Ok(diesel::insert_into(users::table)
            .values(body.into_inner())
            .returning(User::as_returning())
            .get_result(&mut pool.get()?)?)
    })
    .await??;
    Ok(HttpResponse::Created().json(user))
}

#[get("/users/{id}")]
async fn get_user(
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let use_cache = state.cache_usable();
    if use_cache {
        if let Some(user) = state.cache.get(id) {
            return Ok(HttpResponse::Ok()
                .insert_header(("x-cache", "hit"))
                .json(user));
        }
    }
    let lease = use_cache.then(|| state.cache.lease(id));
    let pool = state.pool.clone();
    let found = web::block(move || -> Result<Option<User>, ApiError> {
        Ok(users::table
            .find(id)
            .select(User::as_select())
            .first(&mut pool.get()?)
            .optional()?)
    })
    .await
    .map_err(ApiError::from)
    .and_then(|found| found);
    if let Some(lease) = lease {
        state
            .cache
            .fill(id, lease, found.as_ref().ok().cloned().flatten());
    }
    let user = found?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .insert_header(("x-cache", "miss"))
        .json(user))
}

#[put("/users/{id}")]
async fn update_user(
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: web::Json<UserChanges>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let changes = body.into_inner();
    if changes.name.is_none() && changes.email.is_none() {
        return Err(ApiError::BadRequest("give a name, an email or both"));
    }
    let pool = state.pool.clone();
    let user = web::block(move || -> Result<User, ApiError> {
        Ok(diesel::update(users::table.find(id))
            .set(changes)
            .returning(User::as_returning())
            .get_result(&mut pool.get()?)?)
    })
    .await??;
    // The listener invalidates too, but on its own thread, possibly just after this
    // response: doing it here lets a client read its own write on this server at once.
    state.cache.invalidate(id);
    Ok(HttpResponse::Ok().json(user))
}

#[delete("/users/{id}")]
async fn delete_user(
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let pool = state.pool.clone();
    let deleted = web::block(move || -> Result<usize, ApiError> {
        Ok(diesel::delete(users::table.find(id)).execute(&mut pool.get()?)?)
    })
    .await??;
    if deleted == 0 {
        return Err(ApiError::NotFound);
    }
    state.cache.invalidate(id); // as in update_user
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------- errors

#[derive(Debug)]
enum ApiError {
    NotFound,
    BadRequest(&'static str),
    /// Details go to the log, not to the client.
    Internal,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::NotFound => f.write_str("no such user"),
            ApiError::BadRequest(why) => f.write_str(why),
            ApiError::Internal => f.write_str("internal error"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        if let diesel::result::Error::NotFound = error {
            return ApiError::NotFound;
        }
        tracing::error!(%error, "database error");
        ApiError::Internal
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        tracing::error!(%error, "no database connection");
        ApiError::Internal
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        tracing::error!(%error, "blocking task failed");
        ApiError::Internal
    }
}

// ---------------------------------------------------------------- startup

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    match Config::load().and_then(|config| run(config).map_err(|e| e.to_string())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("actix-cache: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let emitter = Emitter::builder()
        .node_id(&config.node_id)
        .mqtt(MqttConfig::new(&config.mqtt_url).topic_prefix(&config.topic_prefix))
        .build()?;
    // The pool opens connections with `Connection::establish`, which takes this emitter.
    Emitter::set_global(emitter.clone());
    let pool = Pool::builder()
        .max_size(config.pool_size)
        .build(ConnectionManager::new(&config.database_url))?;
    create_schema(&pool)?;

    let cache = Arc::new(UserCache::default());
    // Local and remote events alike: a write through this server or any other.
    // Inserts cannot make an entry stale: misses are not cached and ids are not reused.
    // The listener lives as long as the process (dropping its handle keeps it).
    let listener_cache = cache.clone();
    let _ = emitter
        .on::<User>()
        .actions([Action::Update, Action::Delete])
        .allow_remote(true)
        .name("user-cache")
        .listen(move |event: &Event<User>| listener_cache.invalidate(event.row.id));
    // A cache that misses invalidations serves stale rows: do not start without the broker.
    emitter
        .wait_connected(Duration::from_secs(10))
        .map_err(|_| {
            format!(
                "no answer from the broker at {} within 10 s",
                config.mqtt_url
            )
        })?;

    let state = web::Data::new(AppState {
        pool,
        cache,
        emitter: emitter.clone(),
    });
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .service(create_user)
                .service(get_user)
                .service(update_user)
                .service(delete_user)
        })
        .bind((config.host.as_str(), config.port))?;
        // Bound: connections wait in the backlog until `run` serves them.
        for addr in server.addrs() {
            println!("READY http://{addr}");
        }
        server.run().await // until SIGINT or SIGTERM
    })?;

    // Publish every event already committed before leaving.
    emitter.shutdown(Duration::from_secs(5))?;
    Ok(())
}

/// Creates the table if it is missing. Servers starting together would race on
/// `CREATE TABLE IF NOT EXISTS` (PostgreSQL may then fail on a duplicate catalog
/// entry), so they take turns under a transaction-scoped advisory lock.
fn create_schema(pool: &DbPool) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = pool.get()?;
    conn.transaction(|conn| {
        conn.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA}"
        ))
    })?;
    Ok(())
}
