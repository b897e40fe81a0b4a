//! Output formats for commands whose output is data.

use std::io::Write;

use serde::Serialize;

use crate::error::{CliError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns or prose for people.
    Table,
    Yaml,
    Json,
}

/// Writes `value` as JSON or YAML; `table` is handled by the caller.
pub fn write_data(out: &mut impl Write, format: Format, value: &impl Serialize) -> Result<()> {
    let text = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            s.push('\n');
            s
        }
        Format::Yaml | Format::Table => {
            serde_yaml::to_string(value).map_err(|e| CliError::Invalid(e.to_string()))?
        }
    };
    write_stdout(out, &text)
}

pub fn write_stdout(out: &mut impl Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(|source| CliError::Write {
            path: "<stdout>".into(),
            source,
        })
}
