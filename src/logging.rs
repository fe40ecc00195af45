//! Logs as etcd writes them: by default (`--logger zap`, etcd 3.5's default)
//! one JSON object per line with zap's field names, `level` (lowercase),
//! `ts` (etcd's "2006-01-02T15:04:05.999999Z0700" in UTC), `caller`
//! (file:line), `msg`, then the event's own fields; with `--logger capnslog`
//! (etcd 3.4's default) capnslog's text lines,
//! `2006-01-02 15:04:05.000000 I | module: message key=value`.
//!
//! `--log-outputs` lists where lines go: `stderr`, `stdout`, or file paths
//! (appended to); `default` is stderr (etcd sends it to journald under
//! systemd; oxetcd has no journald writer). Each line is written to every
//! output in one write, so lines from threads never interleave.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// --logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logger {
    Zap,
    Capnslog,
}

/// One --log-outputs target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stderr,
    Stdout,
    File(std::path::PathBuf),
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open log output {path:?}: {source}")]
pub struct LogError {
    path: std::path::PathBuf,
    source: io::Error,
}

/// Installs the process's logger. `OXETCD_LOG` (tracing's filter syntax)
/// overrides `level` per module.
pub fn init(logger: Logger, outputs: &[LogOutput], level: &str) -> Result<(), LogError> {
    let sinks = outputs
        .iter()
        .map(|o| match o {
            LogOutput::Stderr => Ok(Sink::Stderr),
            LogOutput::Stdout => Ok(Sink::Stdout),
            LogOutput::File(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(|f| Sink::File(Mutex::new(f)))
                .map_err(|source| LogError {
                    path: path.clone(),
                    source,
                }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // openraft narrates every election at info; etcd's info log does not.
    let filter = EnvFilter::try_from_env("OXETCD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},openraft=warn")));
    tracing_subscriber::fmt()
        .with_writer(Outputs { sinks })
        .with_env_filter(filter)
        .event_format(Format(logger))
        .init();
    Ok(())
}

enum Sink {
    Stderr,
    Stdout,
    File(Mutex<File>),
}

struct Outputs {
    sinks: Vec<Sink>,
}

impl<'a> MakeWriter<'a> for Outputs {
    type Writer = OutputsWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        OutputsWriter(&self.sinks)
    }
}

/// Writes each buffer (one formatted line) to every output.
struct OutputsWriter<'a>(&'a [Sink]);

impl Write for OutputsWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        for sink in self.0 {
            // A full disk must not stop the member: the line is lost.
            let _ = match sink {
                Sink::Stderr => io::stderr().lock().write_all(buf),
                Sink::Stdout => io::stdout().lock().write_all(buf),
                Sink::File(f) => match f.lock() {
                    Ok(mut f) => f.write_all(buf),
                    Err(poisoned) => poisoned.into_inner().write_all(buf),
                },
            };
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Format(Logger);

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let now = time::OffsetDateTime::now_utc();
        let line = match self.0 {
            Logger::Zap => zap_line(meta.level(), now, meta.file().zip(meta.line()), &fields),
            Logger::Capnslog => capnslog_line(meta.level(), now, meta.target(), &fields),
        };
        writer.write_str(&line)
    }
}

/// An event's message and fields, in the order given.
#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.msg = text;
        } else {
            self.rest
                .push((field.name(), serde_json::Value::String(text)));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            self.rest.push((field.name(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name(), value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.push((field.name(), value.into()));
    }
}

fn zap_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        // zap has no trace level.
        Level::DEBUG | Level::TRACE => "debug",
    }
}

/// Go's "2006-01-02T15:04:05.999999Z0700" in UTC: microseconds without
/// trailing zeros (none at all on a whole second), then "Z".
fn zap_time(t: time::OffsetDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let micros = format!("{:06}", t.microsecond());
    let micros = micros.trim_end_matches('0');
    if !micros.is_empty() {
        s.push('.');
        s.push_str(micros);
    }
    s.push('Z');
    s
}

/// zap's ShortCallerEncoder: the file's directory and name, and the line.
fn short_caller(file: &str, line: u32) -> String {
    let mut parts = file.rsplit('/');
    let name = parts.next().unwrap_or(file);
    match parts.next() {
        Some(dir) => format!("{dir}/{name}:{line}"),
        None => format!("{name}:{line}"),
    }
}

fn json(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn zap_line(
    level: &Level,
    now: time::OffsetDateTime,
    caller: Option<(&str, u32)>,
    fields: &Fields,
) -> String {
    let mut out = format!(
        "{{\"level\":\"{}\",\"ts\":\"{}\"",
        zap_level(level),
        zap_time(now)
    );
    if let Some((file, line)) = caller {
        let _ = write!(out, ",\"caller\":{}", json(&short_caller(file, line)));
    }
    let _ = write!(out, ",\"msg\":{}", json(&fields.msg));
    for (key, value) in &fields.rest {
        let _ = write!(out, ",{}:{value}", json(key));
    }
    out.push_str("}\n");
    out
}

fn capnslog_line(
    level: &Level,
    now: time::OffsetDateTime,
    target: &str,
    fields: &Fields,
) -> String {
    let level = match *level {
        Level::ERROR => 'E',
        Level::WARN => 'W',
        Level::INFO => 'I',
        Level::DEBUG | Level::TRACE => 'D',
    };
    // capnslog names the package: the module here.
    let module = target.rsplit("::").next().unwrap_or(target);
    let mut out = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06} {level} | {module}: {}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond(),
        fields.msg
    );
    for (key, value) in &fields.rest {
        match value {
            serde_json::Value::String(s) => {
                let _ = write!(out, " {key}={s}");
            }
            other => {
                let _ = write!(out, " {key}={other}");
            }
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: u32) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(1_700_000_000)
            .unwrap()
            .replace_microsecond(micros)
            .unwrap()
    }

    fn fields() -> Fields {
        Fields {
            msg: "ready to serve client requests".into(),
            rest: vec![("name", "infra\"1".into()), ("took_ms", 12u64.into())],
        }
    }

    #[test]
    fn zap_lines_have_etcds_field_names_in_order() {
        let line = zap_line(
            &Level::INFO,
            at(123_400),
            Some(("server/src/etcd_server.rs", 42)),
            &fields(),
        );
        assert_eq!(
            line,
            "{\"level\":\"info\",\"ts\":\"2023-11-14T22:13:20.1234Z\",\"caller\":\"src/etcd_server.rs:42\",\"msg\":\"ready to serve client requests\",\"name\":\"infra\\\"1\",\"took_ms\":12}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["level"], "info");
        assert_eq!(zap_time(at(0)), "2023-11-14T22:13:20Z");
        assert_eq!(zap_level(&Level::TRACE), "debug");
    }

    #[test]
    fn capnslog_lines_as_etcd_3_4() {
        assert_eq!(
            capnslog_line(&Level::WARN, at(5), "oxetcd_server::etcd_server", &fields()),
            "2023-11-14 22:13:20.000005 W | etcd_server: ready to serve client requests name=infra\"1 took_ms=12\n"
        );
    }
}
