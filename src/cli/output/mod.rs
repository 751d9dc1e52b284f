//! How cubectl prints: aligned tables ([`Table`]), proto3 JSON ([`to_json`]) and the values in
//! them ([`short_id`], [`age`], [`format_time`], ...).

mod json;
mod table;
mod tasks;
mod text;

pub use json::{from_json_value, to_json, to_json_line, to_json_value, FieldError, ProtoMessage};
pub use table::{fixed_line, Table};
pub use tasks::{row, table, wide_table, COLUMNS};
pub use text::{
    age, enum_name, event_type, format_age, format_proto_duration, format_time, node_state, pairs,
    ports, resources_text, shell_words, short_id, task_state, to_proto_duration,
};

use super::{print_out, Failure, Format};

/// A response in YAML: its proto3 JSON mapping, written as YAML (`-o yaml`).
pub fn to_yaml<M: ProtoMessage>(message: &M) -> String {
    serde_yaml_ng::to_string(&to_json_value(message)).unwrap_or_else(|e| format!("# {e}\n"))
}

/// Prints a response: its JSON in `Json` format, or what `table` renders.
pub fn print<M: ProtoMessage>(
    format: Format,
    message: &M,
    table: impl FnOnce(&M) -> String,
) -> Result<(), Failure> {
    let text = match format {
        Format::Json => to_json(message),
        Format::Table => table(message),
    };
    print_out(&text);
    Ok(())
}

/// The width of the terminal stdout is, or None when stdout is no terminal (a pipe or a file
/// gets whole values). `COLUMNS`, when set, wins, as it does for `ls`.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(columns);
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at one.
    let answered = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (answered && size.ws_col > 0).then_some(usize::from(size.ws_col))
}
