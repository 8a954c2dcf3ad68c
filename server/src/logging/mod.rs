//! The server's log: `tracing` events on stderr, as text or JSON lines (`log.format`), filtered
//! by `log.level`, both changeable by a reload. Lines go through a bounded non-blocking writer
//! ([`writer`]), so logging never makes the broker task wait.

pub mod writer;

use std::io::IsTerminal;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSettings};
use writer::{NonBlocking, WriterGuard, LOG_LINES_QUEUED_MAX};

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type FormatLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Changes the running log's filter and format (a reload).
pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<FormatLayer, Filtered>,
    writer: NonBlocking,
    current: LogSettings,
}

/// Installs the process's log, writing to stderr; lines dropped because stderr could not keep
/// up are counted in `dropped`. `settings.level` must have passed the configuration check.
pub fn init(
    settings: &LogSettings,
    dropped: Arc<AtomicU64>,
) -> std::io::Result<(LogControl, WriterGuard)> {
    let (writer, guard) = NonBlocking::new(std::io::stderr(), LOG_LINES_QUEUED_MAX, dropped)?;
    let (filter, filter_handle) = reload::Layer::new(filter(&settings.level));
    let (format, format_handle) = reload::Layer::new(format_layer(settings.format, &writer));
    // Already set (several servers in one test process): the first one's log stays.
    let _ = tracing_subscriber::registry().with(filter).with(format).try_init();
    let control = LogControl {
        filter: filter_handle,
        format: format_handle,
        writer,
        current: settings.clone(),
    };
    Ok((control, guard))
}

impl LogControl {
    /// Switches to `settings` from the next event on.
    pub fn apply(&mut self, settings: &LogSettings) -> Result<(), String> {
        if settings.level != self.current.level {
            self.filter.reload(filter(&settings.level)).map_err(|err| err.to_string())?;
        }
        if settings.format != self.current.format {
            let layer = format_layer(settings.format, &self.writer);
            self.format.reload(layer).map_err(|err| err.to_string())?;
        }
        self.current = settings.clone();
        Ok(())
    }
}

/// The filter of a checked `log.level`.
fn filter(level: &str) -> EnvFilter {
    EnvFilter::builder().with_regex(false).parse_lossy(level)
}

fn format_layer(format: LogFormat, writer: &NonBlocking) -> FormatLayer {
    let layer = tracing_subscriber::fmt::layer().with_writer(writer.clone());
    match format {
        LogFormat::Text => layer.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => layer.json().with_ansi(false).boxed(),
    }
}
