//! Terminal interaction: progress bars only on a terminal, y/N questions only on a terminal.

use super::error::CliError;
#[cfg(feature = "progress")]
pub use indicatif::ProgressBar as Progress;
#[cfg(feature = "progress")]
use indicatif::ProgressStyle;
use std::io::{BufRead, IsTerminal, Write};

/// Without the `progress` feature (router builds, docs/SIZE.md) nothing is drawn: the same
/// calls as indicatif's hidden bar.
#[cfg(not(feature = "progress"))]
pub struct Progress;

#[cfg(not(feature = "progress"))]
impl Progress {
    pub fn hidden() -> Self {
        Progress
    }
    pub fn inc(&self, _bytes: u64) {}
    pub fn finish_and_clear(&self) {}
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Progress is drawn only on a terminal that can redraw a line: not on a dumb one (TERM unset
/// or `dumb`, as on some serial consoles), where every redraw would be a new line.
#[cfg(feature = "progress")]
fn draws() -> bool {
    stderr_is_tty() && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
}

/// A byte counter with a known total, or hidden when stderr is not a terminal.
#[cfg(feature = "progress")]
pub fn bar(total: u64, msg: &'static str) -> Progress {
    if !draws() {
        return Progress::hidden();
    }
    let pb = Progress::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// A spinner for work of unknown size, or hidden when stderr is not a terminal.
#[cfg(feature = "progress")]
pub fn spinner(msg: &'static str) -> Progress {
    if !draws() {
        return Progress::hidden();
    }
    let pb = Progress::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

#[cfg(not(feature = "progress"))]
pub fn bar(_total: u64, _msg: &'static str) -> Progress {
    Progress
}

#[cfg(not(feature = "progress"))]
pub fn spinner(_msg: &'static str) -> Progress {
    Progress
}

/// `yes` answers for the user; otherwise ask y/N on the terminal, or refuse without one.
pub fn confirm(yes: bool, what: &'static str, question: &str) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !stderr_is_tty() {
        return Err(CliError::NeedsConfirmation(what));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|_| CliError::Aborted)?;
    match line.trim() {
        "y" | "Y" | "yes" | "YES" | "Yes" => Ok(()),
        _ => Err(CliError::Aborted),
    }
}
