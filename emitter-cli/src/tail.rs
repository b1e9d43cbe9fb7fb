//! `diesel-emitter tail`: subscribe, decode, filter, print; count until Ctrl-C.

use crate::output::{self, Counts};
use crate::{Failure, TailArgs};
use emitter_core::crossbeam_channel::{self, select, Receiver};
use emitter_core::wire::Envelope;
use emitter_core::Action;
use emitter_mqtt::{MqttConfig, TlsConfig};
use paho_mqtt as paho;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Subscriptions are QoS 1, as the emitter publishes.
const QOS: i32 = 1;
/// How many event ids `--dedupe` remembers.
const DEDUPE_WINDOW: usize = 100_000;

/// Which events to print.
struct Filters {
    tables: Vec<String>,
    actions: Vec<Action>,
    origins: Vec<String>,
}

impl Filters {
    fn pass(&self, envelope: &Envelope) -> bool {
        (self.tables.is_empty() || self.tables.contains(&envelope.table))
            && (self.actions.is_empty() || self.actions.contains(&envelope.action))
            && (self.origins.is_empty() || self.origins.contains(&envelope.origin))
    }
}

/// How each event is printed.
enum Format {
    Json,
    Human { color: bool },
}

/// Why the event loop ended.
enum End {
    /// Ctrl-C: print the counts.
    Interrupted,
    /// Nobody reads our output any more (`| head`): leave quietly.
    StdoutClosed,
}

/// Runs `tail` until Ctrl-C.
pub(crate) fn run(args: TailArgs) -> Result<(), Failure> {
    for table in &args.tables {
        if table.is_empty() || table.contains(['/', '+', '#', '\0']) {
            return Err(Failure::usage(format!(
                "--table {table:?} is not a table name (one topic level, without `/`, `+`, `#` or NUL)"
            )));
        }
    }
    let mut config = MqttConfig::new(&args.url)
        .topic_prefix(&args.prefix)
        .protocol(args.mqtt_version.into());
    if let (Some(user), Some(password)) = (&args.username, &args.password) {
        config = config.credentials(user, password);
    }
    if args.ca.is_some() || args.cert.is_some() {
        config = config.tls(TlsConfig {
            ca_file: args.ca.clone(),
            client_cert: args.cert.clone(),
            client_key: args.key.clone(),
            ..TlsConfig::default()
        });
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let client_id = format!("diesel-emitter-tail-{}-{nanos:08x}", std::process::id());
    // Paho counts whole seconds: give it at least ours, and enforce ours here.
    let timeout = args.connect_timeout;
    let paho_timeout = Duration::from_secs(timeout.as_secs_f64().ceil() as u64);
    let (create, connect) = config
        .paho_options(&client_id, paho_timeout)
        .map_err(|e| Failure::usage(e.to_string()))?;

    let filters: Vec<String> = if args.tables.is_empty() {
        vec![format!("{}/+/+", args.prefix)]
    } else {
        let mut filters: Vec<String> = Vec::new();
        for table in &args.tables {
            let filter = format!("{}/{table}/+", args.prefix);
            if !filters.contains(&filter) {
                filters.push(filter);
            }
        }
        filters
    };
    let format = if args.json {
        Format::Json
    } else {
        let color = output::use_color(
            args.color,
            io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        );
        Format::Human { color }
    };

    let stop = interrupts()?;
    let mut client = paho::AsyncClient::new(create)
        .map_err(|e| Failure::runtime(format!("cannot create an MQTT client: {e}")))?;
    let events = client.start_consuming_events(None);
    let mut tail = Tail {
        client,
        config,
        seen: args.dedupe.then(|| output::RecentIds::new(DEDUPE_WINDOW)),
        connect,
        timeout,
        url: args.url,
        prefix: args.prefix,
        filters,
        wanted: Filters {
            tables: args.tables,
            actions: args.actions.into_iter().map(Action::from).collect(),
            origins: args.origins,
        },
        format,
        counts: Counts::default(),
    };
    tail.connect().map_err(Failure::runtime)?;
    tail.subscribe()?;
    let end = tail.run(&events, &stop);
    let _ = tail
        .client
        .disconnect(None)
        .wait_for(Duration::from_millis(500));
    match end? {
        // On a terminal the summary starts below the echoed `^C`.
        End::Interrupted if io::stderr().is_terminal() => {
            note(&format!("\n{}", tail.counts.summary()))
        }
        End::Interrupted => note(&tail.counts.summary()),
        End::StdoutClosed => {}
    }
    Ok(())
}

/// A channel that receives one message per Ctrl-C. A second Ctrl-C ends the process
/// at once, should the first not be enough.
fn interrupts() -> Result<Receiver<()>, Failure> {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let (tx, rx) = crossbeam_channel::bounded(1);
    ctrlc::set_handler(move || {
        if SEEN.fetch_add(1, Ordering::Relaxed) > 0 {
            std::process::exit(130);
        }
        let _ = tx.try_send(());
    })
    .map_err(|e| Failure::runtime(format!("cannot handle Ctrl-C: {e}")))?;
    Ok(rx)
}

/// A line on stderr; a closed stderr is not worth a panic. Control characters
/// other than line breaks are escaped: the text may quote a payload.
fn note(text: &str) {
    let text = output::printable_lines(text);
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stderr.write_all(b"\n");
    }
}

struct Tail {
    client: paho::AsyncClient,
    /// To tell why a connection failed when Paho cannot.
    config: MqttConfig,
    /// With `--dedupe`: the ids printed lately.
    seen: Option<output::RecentIds>,
    connect: paho::ConnectOptions,
    timeout: Duration,
    url: String,
    prefix: String,
    /// Topic filters subscribed to.
    filters: Vec<String>,
    wanted: Filters,
    format: Format,
    counts: Counts,
}

impl Tail {
    /// Connects; on failure, what went wrong, naming the broker.
    fn connect(&self) -> Result<(), String> {
        match self
            .client
            .connect(self.connect.clone())
            .wait_for(self.timeout)
        {
            Ok(_) => Ok(()),
            Err(paho::Error::Timeout) => Err(format!(
                "cannot reach the broker at {}: {}",
                self.url,
                self.diagnose()
                    .unwrap_or_else(|| format!("no answer within {:?}", self.timeout))
            )),
            // The broker answered, and said no (credentials, client id, ...).
            Err(error @ (paho::Error::ReasonCode(..) | paho::Error::ConnectReturn(..))) => Err(
                format!("the broker at {} refused the connection: {error}", self.url),
            ),
            // Paho says "General failure" whether the host is unknown or nothing
            // listens there: find out which.
            Err(error) => Err(format!(
                "cannot reach the broker at {}: {}",
                self.url,
                self.diagnose().unwrap_or_else(|| error.to_string())
            )),
        }
    }

    /// What a TCP connection attempt of our own says about the broker.
    fn diagnose(&self) -> Option<String> {
        self.config
            .diagnose_connect(self.timeout.min(Duration::from_secs(2)))
    }

    /// Subscribes to every filter and says so on stderr once the broker's SUBACK is in.
    fn subscribe(&self) -> Result<(), Failure> {
        let response = self
            .client
            .subscribe_many_same_qos(&self.filters, QOS)
            .wait_for(self.timeout)
            .map_err(|e| {
                Failure::runtime(format!(
                    "cannot subscribe to {}: {e}",
                    self.filters.join(", ")
                ))
            })?;
        let codes = response.subscribe_many_response().unwrap_or_default();
        for (filter, code) in self.filters.iter().zip(codes) {
            if code >= 0x80 {
                return Err(Failure::runtime(format!(
                    "the broker refused the subscription to {filter} (reason code {code:#04x})"
                )));
            }
        }
        note(&format!(
            "subscribed to {} at {}",
            self.filters.join(", "),
            self.url
        ));
        Ok(())
    }

    fn run(&mut self, events: &Receiver<paho::Event>, stop: &Receiver<()>) -> Result<End, Failure> {
        loop {
            select! {
                recv(stop) -> _ => return Ok(End::Interrupted),
                recv(events) -> event => match event {
                    Ok(paho::Event::Message(message)) => {
                        if let Some(end) = self.handle(&message)? {
                            return Ok(end);
                        }
                    }
                    Ok(paho::Event::ConnectionLost) | Ok(paho::Event::Disconnected { .. }) => {
                        note(&format!("lost the broker at {}; reconnecting", self.url));
                        if !self.reconnect(stop)? {
                            return Ok(End::Interrupted);
                        }
                    }
                    Ok(paho::Event::Connected) => {}
                    Ok(paho::Event::Shutdown) | Err(_) => {
                        return Err(Failure::runtime("the MQTT client stopped"));
                    }
                },
            }
        }
    }

    /// Connects again, with backoff, until it works or Ctrl-C (then false).
    fn reconnect(&self, stop: &Receiver<()>) -> Result<bool, Failure> {
        let mut wait = Duration::from_millis(50);
        loop {
            if stop.try_recv().is_ok() {
                return Ok(false);
            }
            match self.connect() {
                Ok(()) => {
                    self.subscribe()?;
                    return Ok(true);
                }
                Err(reason) => {
                    if wait >= Duration::from_secs(2) {
                        note(&format!("still no connection: {reason}"));
                    }
                }
            }
            if stop.recv_timeout(wait).is_ok() {
                return Ok(false);
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// Decodes, filters and prints one message; `Some` ends the loop.
    fn handle(&mut self, message: &paho::Message) -> Result<Option<End>, Failure> {
        let topic = message.topic();
        let envelope = match Envelope::decode(&self.prefix, topic, message.payload()) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.counts.rejected += 1;
                note(&format!(
                    "rejected payload on {}: {error}",
                    output::printable(topic)
                ));
                return Ok(None);
            }
        };
        if !self.wanted.pass(&envelope) {
            self.counts.filtered += 1;
            return Ok(None);
        }
        if let Some(seen) = &mut self.seen {
            if !seen.first_time(envelope.id) {
                self.counts.duplicates += 1;
                return Ok(None);
            }
        }
        self.counts.shown(&envelope.table, envelope.action);
        let mut stdout = io::stdout().lock();
        let written = match self.format {
            Format::Json => stdout
                .write_all(&output::json_line(message.payload()))
                .and_then(|()| stdout.write_all(b"\n")),
            Format::Human { color } => {
                writeln!(stdout, "{}", output::human_line(&envelope, color))
            }
        }
        .and_then(|()| stdout.flush());
        match written {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Some(End::StdoutClosed)),
            Err(e) => Err(Failure::runtime(format!("cannot write to stdout: {e}"))),
        }
    }
}
