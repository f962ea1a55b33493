//! A port of Go's `text/tabwriter` (with the `RememberWidths` flag of kubectl's fork), because kubectl's
//! output is defined by it: `kubectl get` aligns with (minwidth 6, padding 3, widths remembered across
//! flushes, so a watch never shrinks a column) and `kubectl describe` with (minwidth 0, padding 2).
//!
//! The semantics that matter and differ from "pad every column to its widest cell": a cell is text
//! terminated by a tab; the text after a line's last tab is not a cell and is never padded; and a column
//! is aligned only across a block of consecutive lines that all have a cell in it, so a line without tabs
//! (`Source:` in describe) starts a new alignment block.

/// One tab-terminated cell.
struct Cell<'a> {
    text: &'a str,
    width: usize,
}

/// Aligns tab-separated text the way Go's tabwriter does.
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    remember_widths: bool,
    max_widths: Vec<usize>,
    buf: String,
}

impl TabWriter {
    /// kubectl's table printer: minwidth 6, padding 3, widths remembered across flushes.
    pub fn for_tables() -> Self {
        TabWriter { minwidth: 6, padding: 3, remember_widths: true, max_widths: Vec::new(), buf: String::new() }
    }

    /// kubectl describe's writer: minwidth 0, padding 2.
    pub fn for_describe() -> Self {
        TabWriter { minwidth: 0, padding: 2, remember_widths: false, max_widths: Vec::new(), buf: String::new() }
    }

    /// Buffers text; nothing is aligned until [`TabWriter::flush`].
    pub fn write(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    /// Aligns and returns everything buffered so far.
    pub fn flush(&mut self) -> String {
        let text = std::mem::take(&mut self.buf);
        let lines: Vec<Vec<Cell<'_>>> = text
            .split('\n')
            .map(|line| line.split('\t').map(|t| Cell { text: t, width: t.chars().count() }).collect())
            .collect();
        let mut out = String::with_capacity(text.len() * 2);
        let mut widths = Vec::new();
        self.format(&mut out, &lines, &mut widths, 0, lines.len());
        out
    }

    fn format(
        &mut self,
        out: &mut String,
        lines: &[Vec<Cell<'_>>],
        widths: &mut Vec<usize>,
        line0: usize,
        line1: usize,
    ) {
        let column = widths.len();
        let mut line0 = line0;
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            // A cell in this column: print the lines before the block, then size the block.
            write_lines(out, lines, widths, line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(lines[this][column].width + self.padding);
                this += 1;
            }
            if self.remember_widths {
                if self.max_widths.len() <= column {
                    self.max_widths.resize(column + 1, 0);
                }
                width = width.max(self.max_widths[column]);
                self.max_widths[column] = width;
            }
            widths.push(width);
            self.format(out, lines, widths, line0, this);
            widths.pop();
            line0 = this;
        }
        write_lines(out, lines, widths, line0, line1);
    }
}

fn write_lines(out: &mut String, lines: &[Vec<Cell<'_>>], widths: &[usize], line0: usize, line1: usize) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell.text);
            if j < widths.len() && j + 1 < line.len() {
                out.extend(std::iter::repeat_n(' ', widths[j].saturating_sub(cell.width)));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_with_kubectls_table_settings() {
        let mut w = TabWriter::for_tables();
        w.write("NAME\tCAPACITY\tAGE\nnfs\t1Mi\t5s\n");
        assert_eq!(w.flush(), "NAME   CAPACITY   AGE\nnfs    1Mi        5s\n");
    }

    #[test]
    fn remembers_widths_across_flushes_for_watches() {
        let mut w = TabWriter::for_tables();
        w.write("NAME\tSTATUS\nlong-name\tBound\n");
        w.flush();
        w.write("a\tPending\n");
        assert_eq!(w.flush(), "a           Pending\n");
    }

    #[test]
    fn a_line_without_tabs_starts_a_new_alignment_block() {
        let mut w = TabWriter::for_describe();
        w.write("Name:\tx\nSource:\n    Type:\tNFS (an NFS mount)\n    Server:\t1.2.3.4\n");
        assert_eq!(w.flush(), "Name:  x\nSource:\n    Type:    NFS (an NFS mount)\n    Server:  1.2.3.4\n");
    }

    #[test]
    fn trailing_text_after_the_last_tab_is_not_padded() {
        let mut w = TabWriter::for_describe();
        w.write("Labels:\ta=b\n\tc=d\nAnnotations:\t<none>\n");
        assert_eq!(w.flush(), "Labels:       a=b\n              c=d\nAnnotations:  <none>\n");
    }
}
