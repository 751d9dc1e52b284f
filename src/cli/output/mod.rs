//! How cubectl prints: aligned tables ([`Table`]), proto3 JSON ([`to_json`]) and the values in
//! them ([`short_id`], [`age`], [`format_time`], ...).

mod json;
mod table;
mod tasks;
mod text;

pub use json::{from_json_value, to_json, to_json_line, to_json_value, FieldError, ProtoMessage};
pub use table::Table;
pub use tasks::{row, table, COLUMNS};
pub use text::{
    age, enum_name, event_type, format_age, format_proto_duration, format_time, node_state, pairs,
    ports, resources_text, shell_words, short_id, task_state, to_proto_duration,
};

use super::{print_out, Failure, Format};

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
