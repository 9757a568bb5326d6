//! Progress of long commands on stderr: a bar on a terminal, plain lines
//! otherwise.

use super::*;

/// Progress on stderr: a bar on a terminal, otherwise a plain line at most
/// every two seconds (and at the end).
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    last_line: Instant,
}

impl Progress {
    pub(super) fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} ({eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what);
            bar
        });
        Self {
            bar,
            what,
            last_line: Instant::now(),
        }
    }

    pub(super) fn spinner(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if bar.is_none() {
            eprintln!("{what}…");
        }
        Self {
            bar,
            what,
            last_line: Instant::now(),
        }
    }

    pub(super) fn set(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(2) || done >= total {
                    eprintln!("{}: {done}/{total}", self.what);
                    self.last_line = Instant::now();
                }
            }
        }
    }

    pub(super) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
