//! Broker authentication, TLS and protocol versions, each against a Mosquitto of the
//! test's own (killed when the test ends, also on failure).

mod broker;

use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::{Error, MqttConfigError, Protocol, TlsConfig};
use diesel_emitter::{Event, Source};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs a command to completion, panicking with its output if it fails.
fn run(cmd: &mut Command) {
    let output = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Expects `build()` to fail with `BrokerUnreachable` within the timeout (plus slack).
#[track_caller]
fn assert_unreachable(config: MqttConfig, timeout: Duration) {
    let started = Instant::now();
    let result = Emitter::builder()
        .node_id(node_name("x"))
        .mqtt(config.require_connection(timeout))
        .build();
    match result {
        Err(Error::BrokerUnreachable { .. }) => {}
        Err(other) => panic!("expected BrokerUnreachable, got {other:?}"),
        Ok(e) => {
            let stats = e.stats();
            let _ = e.shutdown(Duration::from_secs(1));
            panic!("expected BrokerUnreachable, but build() connected: {stats:?}");
        }
    }
    assert!(
        started.elapsed() < timeout + Duration::from_secs(3),
        "build() took {:?}",
        started.elapsed()
    );
}

/// A writes one row, B (remote_only) receives it from A.
#[track_caller]
fn assert_events_flow(
    a: &Emitter,
    b: &Emitter,
    rx: &diesel_emitter::crossbeam_channel::Receiver<Event<User>>,
) {
    connected(&[a, b]);
    let db = Db::new("sec");
    let mut conn = db.conn(a);
    let row = insert(&mut conn, "secure", true);
    let ev = recv(rx);
    assert_eq!(
        (&ev.row, &*ev.meta.origin, ev.meta.source),
        (&row, a.node_id(), Source::Remote)
    );
}

// ---------------------------------------------------------------- 15

#[test]
fn username_and_password_right_credentials_deliver_wrong_ones_are_unreachable() {
    let secrets = TempDir::new("passwd");
    let passwd = secrets.join("passwd");
    run(Command::new("mosquitto_passwd")
        .arg("-b")
        .arg("-c")
        .arg(&passwd)
        .args(["emitter", "s3cret"]));
    let broker = Broker::start_with(BrokerConfig {
        allow_anonymous: false,
        global_lines: vec![format!("password_file {}", passwd.display())],
        ..BrokerConfig::default()
    });
    let prefix = unique_prefix("auth");
    let config = MqttConfig::new(broker.url()).topic_prefix(&prefix);

    let a = node("a", config.clone().credentials("emitter", "s3cret"));
    let b = node(
        "b",
        config
            .clone()
            .credentials("emitter", "s3cret")
            .require_connection(TIMEOUT),
    );
    let rx = b.on::<User>().remote_only(true).subscribe();
    assert_events_flow(&a, &b, &rx);

    assert_unreachable(
        config.clone().credentials("emitter", "wrong"),
        Duration::from_secs(2),
    );
    assert_unreachable(
        config.clone().credentials("nobody", "s3cret"),
        Duration::from_secs(2),
    );
    assert_unreachable(config, Duration::from_secs(2));
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------- 16

/// A CA and a server certificate signed by it for `san`, made with the openssl CLI.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new(san: &str) -> Pki {
        let dir = TempDir::new("pki");
        let p = |name: &str| dir.join(name);
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=diesel-emitter test CA",
            ])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.crt")));
        let pki = Pki { dir };
        pki.issue(
            "server",
            "/CN=diesel-emitter test server",
            &format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            ),
        );
        pki
    }

    /// A key `<name>.key` and a certificate `<name>.crt` for `subject`, signed by
    /// the CA with the x509 extensions `extensions`.
    fn issue(&self, name: &str, subject: &str, extensions: &str) {
        let p = |file: &str| self.path(&format!("{name}.{file}"));
        run(Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject])
            .arg("-keyout")
            .arg(p("key"))
            .arg("-out")
            .arg(p("csr")));
        std::fs::write(p("cnf"), extensions).unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("csr"))
            .arg("-CA")
            .arg(self.path("ca.crt"))
            .arg("-CAkey")
            .arg(self.path("ca.key"))
            .arg("-extfile")
            .arg(p("cnf"))
            .arg("-out")
            .arg(p("crt")));
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn broker(&self) -> Broker {
        Broker::start_with(BrokerConfig {
            listener_lines: vec![
                format!("cafile {}", self.path("ca.crt").display()),
                format!("certfile {}", self.path("server.crt").display()),
                format!("keyfile {}", self.path("server.key").display()),
            ],
            ..BrokerConfig::default()
        })
    }
}

fn tls(ca: Option<&Path>, verify_hostname: bool) -> TlsConfig {
    TlsConfig {
        ca_file: ca.map(Path::to_path_buf),
        verify_hostname,
        ..TlsConfig::default()
    }
}

#[test]
fn tls_with_the_ca_delivers_without_it_is_unreachable_and_a_missing_ca_file_is_a_config_error() {
    let pki = Pki::new("IP:127.0.0.1,DNS:localhost");
    let broker = pki.broker();
    let prefix = unique_prefix("tls");
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let ca = pki.path("ca.crt");
    let config = MqttConfig::new(&url).topic_prefix(&prefix);

    let a = node(
        "a",
        config
            .clone()
            .tls(tls(Some(&ca), true))
            .require_connection(TIMEOUT),
    );
    let b = node(
        "b",
        config
            .clone()
            .tls(tls(Some(&ca), true))
            .require_connection(TIMEOUT),
    );
    let rx = b.on::<User>().remote_only(true).subscribe();
    assert_events_flow(&a, &b, &rx);
    // The certificate also names `localhost`.
    let c = node(
        "c",
        MqttConfig::new(format!("mqtts://localhost:{}", broker.port))
            .topic_prefix(&prefix)
            .tls(tls(Some(&ca), true))
            .require_connection(TIMEOUT),
    );
    assert!(c.stats().broker_connected);

    // Without the CA the broker's certificate is not trusted.
    assert_unreachable(config.clone(), Duration::from_secs(3));
    assert_unreachable(config.clone().tls(tls(None, true)), Duration::from_secs(3));
    assert_unreachable(config.clone().tls(tls(None, false)), Duration::from_secs(3));

    // A CA path that does not exist is caught by build(), before any connection.
    let missing = pki.path("no-such-ca.crt");
    match Emitter::builder()
        .mqtt(config.clone().tls(tls(Some(&missing), true)))
        .build()
        .map_err(|e| e.transport_error::<MqttConfigError>().cloned())
    {
        Err(Some(MqttConfigError::TlsFile(path))) => assert_eq!(path, missing),
        other => panic!("expected MqttConfigError::TlsFile, got {other:?}"),
    }
    shutdown_all(&[&a, &b, &c]);
}

#[test]
fn tls_hostname_verification_rejects_a_certificate_for_another_host() {
    let pki = Pki::new("DNS:wrong.example");
    let broker = pki.broker();
    let ca = pki.path("ca.crt");
    let config = MqttConfig::new(format!("mqtts://127.0.0.1:{}", broker.port))
        .topic_prefix(unique_prefix("tls_host"));

    assert_unreachable(
        config.clone().tls(tls(Some(&ca), true)),
        Duration::from_secs(3),
    );
    // Opting out of the host check (but not of the chain check) connects.
    let lax = node(
        "lax",
        config
            .clone()
            .tls(tls(Some(&ca), false))
            .require_connection(TIMEOUT),
    );
    assert!(lax.stats().broker_connected);
    shutdown_all(&[&lax]);
}

#[test]
fn tls_config_verifies_the_hostname_by_default() {
    // `TlsConfig::verify_hostname` is documented "(default true)", so filling the
    // rest of a TlsConfig with `..Default::default()` must keep the host check.
    let pki = Pki::new("DNS:wrong.example");
    let broker = pki.broker();
    let ca = pki.path("ca.crt");
    let config = MqttConfig::new(format!("mqtts://127.0.0.1:{}", broker.port))
        .topic_prefix(unique_prefix("tls_default"))
        .tls(TlsConfig {
            ca_file: Some(ca),
            ..TlsConfig::default()
        });
    assert_unreachable(config, Duration::from_secs(3));
    assert!(
        TlsConfig::default().verify_hostname,
        "TlsConfig::default() must verify the broker's host name, as documented"
    );
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let pki = Pki::new("IP:127.0.0.1,DNS:localhost");
    let p = |name: &str| pki.path(name);
    pki.issue(
        "client",
        "/CN=emitter-client",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
    let broker = Broker::start_with(BrokerConfig {
        listener_lines: vec![
            format!("cafile {}", p("ca.crt").display()),
            format!("certfile {}", p("server.crt").display()),
            format!("keyfile {}", p("server.key").display()),
            "require_certificate true".to_owned(),
        ],
        ..BrokerConfig::default()
    });
    let prefix = unique_prefix("mtls");
    let config =
        MqttConfig::new(format!("mqtts://127.0.0.1:{}", broker.port)).topic_prefix(&prefix);
    let with_cert = TlsConfig {
        ca_file: Some(p("ca.crt")),
        client_cert: Some(p("client.crt")),
        client_key: Some(p("client.key")),
        verify_hostname: true,
    };
    let a = node(
        "a",
        config
            .clone()
            .tls(with_cert.clone())
            .require_connection(TIMEOUT),
    );
    let b = node(
        "b",
        config.clone().tls(with_cert).require_connection(TIMEOUT),
    );
    let rx = b.on::<User>().remote_only(true).subscribe();
    assert_events_flow(&a, &b, &rx);
    assert_unreachable(
        config.tls(tls(Some(&p("ca.crt")), true)),
        Duration::from_secs(3),
    );
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------- 17

#[test]
fn mqtt_311_delivers_remote_events() {
    let broker = Broker::start();
    let prefix = unique_prefix("v311");
    let config = MqttConfig::new(broker.url())
        .topic_prefix(&prefix)
        .protocol(Protocol::V311)
        .require_connection(TIMEOUT);
    let a = node("a", config.clone());
    let b = node("b", config.clone().client_id(node_name("b311")));
    let a_all = a.on::<User>().allow_remote(true).subscribe();
    let rx = b.on::<User>().remote_only(true).subscribe();
    assert_events_flow(&a, &b, &rx);
    let local = recv(&a_all);
    assert_eq!(local.meta.source, Source::Local);

    // Without the MQTT 5 user property, the origin in the envelope still keeps A
    // from hearing its own event: B's sentinel is the next thing A sees.
    let db = Db::new("v311");
    let mut conn = db.conn(&b);
    insert(&mut conn, "sentinel", true);
    let next = recv(&a_all);
    assert_eq!(
        (next.row.name.as_str(), next.meta.source),
        ("sentinel", Source::Remote)
    );
    assert_empty(&a_all);
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------- ACL example

/// A broker run with the README's ACL example (`docs/mosquitto/acl`) and two
/// services, `shop` and `billing`, each with a password.
fn acl_broker(secrets: &TempDir) -> Broker {
    let passwd = secrets.join("passwd");
    run(Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args(["shop", "shop-secret"]));
    run(Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(&passwd)
        .args(["billing", "billing-secret"]));
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/mosquitto/acl");
    Broker::start_with(BrokerConfig {
        allow_anonymous: false,
        global_lines: vec![
            format!("password_file {}", passwd.display()),
            format!("acl_file {}", acl.display()),
        ],
        ..BrokerConfig::default()
    })
}

#[test]
fn acl_example_lets_a_service_read_another_services_events() {
    let secrets = TempDir::new("acl_read");
    let broker = acl_broker(&secrets);
    let shop_events = MqttConfig::new(broker.url()).topic_prefix("shop/events");

    let shop = node(
        "shop",
        shop_events.clone().credentials("shop", "shop-secret"),
    );
    let billing = node(
        "billing",
        shop_events.credentials("billing", "billing-secret"),
    );
    let heard = billing.on::<User>().remote_only(true).subscribe();

    assert_events_flow(&shop, &billing, &heard);
    shutdown_all(&[&shop, &billing]);
}

#[test]
fn acl_example_refuses_a_service_publishing_under_another_services_prefix() {
    let secrets = TempDir::new("acl_write");
    let broker = acl_broker(&secrets);
    let shop_events = MqttConfig::new(broker.url()).topic_prefix("shop/events");
    let shop = node(
        "shop",
        shop_events.clone().credentials("shop", "shop-secret"),
    );
    let shop_listener = shop.on::<User>().remote_only(true).subscribe();
    let other_shop = node(
        "shop",
        shop_events.clone().credentials("shop", "shop-secret"),
    );
    let forger = node(
        "billing",
        shop_events.credentials("billing", "billing-secret"),
    );
    connected(&[&shop, &other_shop, &forger]);
    let db = Db::new("acl");

    insert(&mut db.conn(&forger), "forged", true);
    assert!(
        eventually(TIMEOUT, || forger.stats().publish_failed == 1),
        "the broker refuses the publish and the forger counts it: {:?}",
        forger.stats()
    );
    // Published after the refusal: had the forged event been accepted, it would
    // have reached the listener first.
    let genuine = insert(&mut db.conn(&other_shop), "genuine", true);

    assert_eq!(recv(&shop_listener).row, genuine);
    assert_eq!(forger.stats().published, 0);
    shutdown_all(&[&shop, &other_shop, &forger]);
}

// ---------------------------------------------------------------- configuration

#[test]
fn a_topic_prefix_under_sys_is_a_configuration_error() {
    for prefix in ["$SYS/", "$SYS/broker/events", "$share/g/events"] {
        match Emitter::builder()
            .mqtt(MqttConfig::new(SHARED_URL).topic_prefix(prefix))
            .build()
            .map_err(|e| e.transport_error::<MqttConfigError>().cloned())
        {
            Err(Some(MqttConfigError::ReservedPrefix(p))) => assert_eq!(p, prefix),
            other => panic!("expected ReservedPrefix for {prefix:?}, got {other:?}"),
        }
    }
}

/// The reason `build()` gives for a broker it could not reach within `timeout`.
fn unreachable_reason(url: &str) -> String {
    let config = MqttConfig::new(url).require_connection(Duration::from_secs(5));
    match Emitter::builder().mqtt(config).build() {
        Err(Error::BrokerUnreachable { reason, .. }) => reason,
        other => panic!("expected BrokerUnreachable, got {other:?}"),
    }
}

#[test]
fn an_unresolvable_broker_host_is_reported_as_such() {
    let reason = unreachable_reason("mqtt://no-such-host.invalid:1883");
    assert!(
        reason.starts_with("cannot resolve host no-such-host.invalid"),
        "{reason}"
    );
}

#[test]
fn a_refused_connection_is_reported_as_such() {
    let port = free_port();
    let reason = unreachable_reason(&format!("mqtt://127.0.0.1:{port}"));
    assert!(
        reason.starts_with(&format!("connection refused by 127.0.0.1:{port}")),
        "{reason}"
    );
}
