//! Terminal interaction: progress bars only on a terminal, y/N questions only on a terminal.

use super::error::CliError;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, IsTerminal, Write};

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Progress is drawn only on a terminal that can redraw a line: not on a dumb one (TERM unset
/// or `dumb`, as on some serial consoles), where every redraw would be a new line.
fn draws() -> bool {
    stderr_is_tty() && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
}

/// A byte counter with a known total, or hidden when stderr is not a terminal.
pub fn bar(total: u64, msg: &'static str) -> ProgressBar {
    if !draws() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg);
    pb
}

/// A spinner for work of unknown size, or hidden when stderr is not a terminal.
pub fn spinner(msg: &'static str) -> ProgressBar {
    if !draws() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        pb.set_style(style);
    }
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
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
