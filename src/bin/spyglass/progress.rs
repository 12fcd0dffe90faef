//! Progress reporting on standard error: a bar for long runs (hidden when stderr is not a
//! terminal) and the one-line summary every command prints.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over input bytes or counted items (or a spinner when the size is unknown).
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
}

/// What a bar counts, which decides how its position is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Bytes,
    Items,
}

impl Counter {
    fn template(self) -> &'static str {
        match self {
            Self::Bytes => "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({eta} left)",
            Self::Items => "{spinner} {msg} [{bar:30}] {human_pos}/{human_len} ({eta} left)",
        }
    }
}

impl Progress {
    /// A bar over `total_bytes` of input, shown as sizes (`1.2 MiB/3.4 MiB`).
    pub fn new(total_bytes: Option<u64>, what: &str) -> Self {
        Self::with_counter(total_bytes, what, Counter::Bytes)
    }

    /// A bar over `total` items (articles, folds), shown as counts (`120/308`).
    pub fn items(total: u64, what: &str) -> Self {
        Self::with_counter(Some(total), what, Counter::Items)
    }

    fn with_counter(total: Option<u64>, what: &str, counter: Counter) -> Self {
        use std::io::IsTerminal;
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = match total {
            Some(total) => {
                let bar = ProgressBar::with_draw_target(Some(total), target);
                bar.set_style(
                    ProgressStyle::with_template(counter.template())
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, target);
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("valid template"),
                );
                bar
            }
        };
        bar.set_message(what.to_string());
        Self {
            bar,
            started: Instant::now(),
        }
    }

    /// Moves the bar to `position` (bytes read, or items done) with a new message.
    pub fn update(&self, position: u64, message: String) {
        self.bar.set_position(position);
        self.bar.set_message(message);
    }

    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_bars_show_counts_and_byte_bars_show_sizes() {
        assert!(Counter::Items
            .template()
            .contains("{human_pos}/{human_len}"));
        assert!(!Counter::Items.template().contains("bytes"));
        assert!(Counter::Bytes.template().contains("{bytes}/{total_bytes}"));
        for counter in [Counter::Bytes, Counter::Items] {
            assert!(ProgressStyle::with_template(counter.template()).is_ok());
        }
    }
}
