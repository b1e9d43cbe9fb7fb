//! `diesel-emitter`: command-line tools for diesel-emitter.
//!
//! `diesel-emitter tail` subscribes to the events passing through an MQTT broker and
//! prints them as they pass: one envelope per line with `--json`, otherwise one
//! readable line per event. Ctrl-C prints the counts per table and action.

mod output;
mod tail;

use clap::{Args, Parser, Subcommand, ValueEnum};
use emitter_core::Action;
use emitter_mqtt::{Protocol, DEFAULT_PREFIX};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "diesel-emitter",
    version,
    about = "Tools for diesel-emitter's change events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the events passing through the broker, live, until Ctrl-C.
    ///
    /// Events travel at QoS 1, which is at least once: the same event can be
    /// delivered twice (after a reconnect, or when a publisher resends what the
    /// broker had not acknowledged). `--dedupe` drops repeated event ids. Whatever
    /// came from the network is printed with control characters escaped.
    Tail(TailArgs),
}

/// The arguments of `diesel-emitter tail`.
#[derive(Args, Debug)]
pub(crate) struct TailArgs {
    /// Broker URL: mqtt://, tcp://, or with TLS mqtts://, ssl://.
    #[arg(long, value_name = "URL", default_value = "mqtt://127.0.0.1:1883")]
    pub(crate) url: String,
    /// Topic prefix the emitters publish under.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub(crate) prefix: String,
    /// Only events of this table (repeatable; subscribes to `{prefix}/{table}/+` each).
    #[arg(long = "table", value_name = "TABLE")]
    pub(crate) tables: Vec<String>,
    /// Only events of this action (repeatable).
    #[arg(long = "action", value_name = "ACTION", value_enum)]
    pub(crate) actions: Vec<ActionArg>,
    /// Only events committed by this node id (repeatable).
    #[arg(long = "origin", value_name = "NODE")]
    pub(crate) origins: Vec<String>,
    /// Print each envelope as received, one per line (for jq).
    #[arg(long)]
    pub(crate) json: bool,
    /// Drop events whose id was already printed (the last 100,000 ids are
    /// remembered): QoS 1 delivers at least once, so an event can arrive twice.
    #[arg(long)]
    pub(crate) dedupe: bool,
    /// Colours in the readable format: auto (a terminal, unless NO_COLOR is set),
    /// always or never.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorArg::Auto)]
    pub(crate) color: ColorArg,
    /// Broker user name.
    #[arg(long, value_name = "USER", requires = "password")]
    pub(crate) username: Option<String>,
    /// Broker password. Prefer the MQTT_PASSWORD environment variable: other users
    /// of the machine can read a command line in the process list.
    #[arg(
        long,
        value_name = "PASSWORD",
        requires = "username",
        env = "MQTT_PASSWORD",
        hide_env_values = true
    )]
    pub(crate) password: Option<String>,
    /// PEM file of the certificate authorities that sign the broker's certificate
    /// (implies TLS).
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// PEM file of this client's certificate, for brokers that require one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// PEM file of this client's private key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// MQTT protocol version.
    #[arg(long, value_name = "VERSION", value_enum, default_value_t = ProtocolArg::V5)]
    pub(crate) mqtt_version: ProtocolArg,
    /// How long to wait for the broker: seconds (`5`, `0.5`) or a duration (`500ms`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,
}

/// `--action`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ActionArg {
    Insert,
    Update,
    Delete,
}

impl From<ActionArg> for Action {
    fn from(action: ActionArg) -> Action {
        match action {
            ActionArg::Insert => Action::Insert,
            ActionArg::Update => Action::Update,
            ActionArg::Delete => Action::Delete,
        }
    }
}

/// `--color`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorArg {
    Auto,
    Always,
    Never,
}

/// `--mqtt-version`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProtocolArg {
    #[value(name = "5")]
    V5,
    #[value(name = "3.1.1")]
    V311,
}

impl From<ProtocolArg> for Protocol {
    fn from(protocol: ProtocolArg) -> Protocol {
        match protocol {
            ProtocolArg::V5 => Protocol::V5,
            ProtocolArg::V311 => Protocol::V311,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => Duration::from_secs_f64(secs),
        Ok(_) => return Err("must be a positive number of seconds".to_owned()),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string())?,
    };
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

/// Why the tool stopped with an error: said in one line on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    /// 2 for a bad command line or configuration, 1 for what happened at run time.
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tail(args) => tail::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // The message may quote what the broker or a payload said.
            let message = output::printable(&failure.message);
            let _ = writeln!(std::io::stderr(), "diesel-emitter: {message}");
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_seconds_or_with_a_unit() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
