//! Printing `meta.k8s.io/v1` Tables as kubectl's `HumanReadablePrinter` does: upper-cased column names,
//! priority > 0 columns only with `-o wide`, a NAMESPACE column first with `-A`, cells after the first
//! newline cut with `...`, and the whole aligned by the table tabwriter.

use super::tabwriter::TabWriter;
use serde_json::Value;

/// The table printer's options.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// `-o wide`.
    pub wide: bool,
    /// `-A`: prefix each row with its namespace.
    pub with_namespace: bool,
}

/// Prints tables, remembering column widths (and whether the header was printed) across calls.
pub struct TablePrinter {
    options: TableOptions,
    /// `persistentvolume`: prefixes the name column (`persistentvolume/nfs`).
    kind_prefix: Option<String>,
    writer: TabWriter,
    header_printed: bool,
}

impl TablePrinter {
    /// A printer with `options`.
    pub fn new(options: TableOptions) -> Self {
        TablePrinter { options, kind_prefix: None, writer: TabWriter::for_tables(), header_printed: false }
    }

    /// A printer that prefixes names with `kind/`.
    pub fn with_kind_prefix(options: TableOptions, kind: &str) -> Self {
        TablePrinter { kind_prefix: Some(kind.to_string()), ..TablePrinter::new(options) }
    }

    /// The text for `table`'s rows, with the header the first time rows are printed. `columns` are the
    /// column definitions to use when `table` has none (watch events after the first).
    pub fn print(&mut self, table: &Value, columns: &[Value]) -> String {
        let own = table["columnDefinitions"].as_array().filter(|c| !c.is_empty());
        let columns = own.map(Vec::as_slice).unwrap_or(columns);
        let rows = table["rows"].as_array().map(Vec::as_slice).unwrap_or_default();
        if rows.is_empty() {
            return String::new();
        }
        // Only the first name-formatted column gets the kind prefix, as in kubectl's decorateTable.
        let name_column =
            columns.iter().position(|c| c["format"] == "name" && c["type"].as_str().is_none_or(|t| t == "string"));
        let shown: Vec<bool> =
            columns.iter().map(|c| self.options.wide || c["priority"].as_i64().unwrap_or(0) == 0).collect();
        if !self.header_printed {
            let mut header: Vec<String> = Vec::new();
            if self.options.with_namespace {
                header.push("NAMESPACE".into());
            }
            for (c, show) in columns.iter().zip(&shown) {
                if *show {
                    header.push(c["name"].as_str().unwrap_or_default().to_uppercase());
                }
            }
            self.writer.write(&(header.join("\t") + "\n"));
            self.header_printed = true;
        }
        for row in rows {
            let mut cells: Vec<String> = Vec::new();
            if self.options.with_namespace {
                cells.push(row["object"]["metadata"]["namespace"].as_str().unwrap_or_default().to_string());
            }
            let row_cells = row["cells"].as_array().map(Vec::as_slice).unwrap_or_default();
            for (i, (cell, show)) in row_cells.iter().zip(&shown).enumerate() {
                if !*show {
                    continue;
                }
                match &self.kind_prefix {
                    Some(kind) if Some(i) == name_column => cells.push(format!("{kind}/{}", cell_text(cell))),
                    _ => cells.push(cell_text(cell)),
                }
            }
            self.writer.write(&(cells.join("\t") + "\n"));
        }
        self.writer.flush()
    }
}

/// One cell as kubectl prints it.
fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => String::new(),
        Value::String(s) => match s.find(['\n', '\r', '\x0c']) {
            Some(i) => format!("{}...", &s[..i]),
            None => s.clone(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefixes_names_with_the_kind_when_asked() {
        let mut table = table();
        table["columnDefinitions"][0]["format"] = json!("name");
        let mut p = TablePrinter::with_kind_prefix(TableOptions::default(), "persistentvolume");
        assert_eq!(
            p.print(&table, &[]),
            "NAME                   ACCESS MODES   AGE\npersistentvolume/nfs   RWX            3s\n"
        );
    }

    fn table() -> Value {
        json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "Access Modes", "priority": 0},
                {"name": "VolumeMode", "priority": 1}, {"name": "Age", "priority": 0}],
            "rows": [{"cells": ["nfs", "RWX", "Filesystem", "3s"], "object": {"metadata": {"namespace": "default"}}}]
        })
    }

    #[test]
    fn hides_wide_columns_and_upper_cases_headers() {
        let mut p = TablePrinter::new(TableOptions::default());
        assert_eq!(p.print(&table(), &[]), "NAME   ACCESS MODES   AGE\nnfs    RWX            3s\n");
    }

    #[test]
    fn wide_and_all_namespaces_add_columns() {
        let mut p = TablePrinter::new(TableOptions { wide: true, with_namespace: true });
        assert_eq!(
            p.print(&table(), &[]),
            "NAMESPACE   NAME   ACCESS MODES   VOLUMEMODE   AGE\ndefault     nfs    RWX            Filesystem   3s\n"
        );
    }
}
