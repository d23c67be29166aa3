//! How the demo talks: progress bars and lines on a terminal, plain lines when headless, and
//! only standard error when standard output is reserved for the JSON report.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Set by the Ctrl-C watcher; every wait of the demo checks it.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Watches for Ctrl-C (and for SIGTERM and SIGHUP: a closed terminal) on a thread of its own
/// from now on: the demo then stops its processes in order instead of leaving them behind.
pub fn watch_ctrl_c() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut hangup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                if tokio::signal::ctrl_c().await.is_ok() {
                    INTERRUPTED.store(true, Ordering::SeqCst);
                }
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = hangup.recv() => {}
            }
            INTERRUPTED.store(true, Ordering::SeqCst);
        });
    });
}

/// Sleeps, unless Ctrl-C was pressed: then an error.
pub fn pause(duration: Duration) -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    std::thread::sleep(duration);
    if interrupted() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// Where the narration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A terminal, with progress bars.
    Terminal,
    /// Plain lines on standard output.
    Stdout,
    /// Plain lines on standard error (standard output holds the JSON report).
    Stderr,
}

/// The narrator.
pub struct Narrator {
    target: Target,
    multi: MultiProgress,
}

impl Narrator {
    /// Bars when interactive on a terminal; plain lines otherwise; standard error for JSON.
    pub fn new(headless: bool, json: bool) -> Self {
        let target = if json {
            Target::Stderr
        } else if !headless && std::io::stdout().is_terminal() {
            Target::Terminal
        } else {
            Target::Stdout
        };
        let multi = if target == Target::Terminal {
            MultiProgress::with_draw_target(ProgressDrawTarget::stdout())
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        Self { target, multi }
    }

    /// Whether progress bars are drawn.
    pub fn bars(&self) -> bool {
        self.target == Target::Terminal
    }

    /// One line of narration.
    pub fn say(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        match self.target {
            // Bars hidden, the line printed, bars drawn again below it.
            Target::Terminal => self.multi.suspend(|| println!("{line}")),
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Target::Stderr => eprintln!("{line}"),
        }
    }

    /// A heading: a blank line and the title.
    pub fn section(&self, title: &str) {
        self.say("");
        if self.bars() {
            self.say(format!("\x1b[1m▸ {title}\x1b[0m"));
        } else {
            self.say(format!("▸ {title}"));
        }
    }

    /// A spinner with a message (hidden unless bars are drawn).
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        if !self.bars() {
            return ProgressBar::hidden();
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }

    /// A bar of `len` steps with a prefix (hidden unless bars are drawn).
    pub fn bar(&self, len: u64, prefix: impl Into<String>) -> ProgressBar {
        if !self.bars() {
            return ProgressBar::hidden();
        }
        let bar = self.multi.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template("  {prefix:<6} [{bar:24.green/white}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("█▌ "),
        );
        bar.set_prefix(prefix.into());
        bar
    }

    /// Removes a finished bar or spinner from the screen.
    pub fn clear(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.multi.remove(bar);
    }
}
