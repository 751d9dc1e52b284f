//! Aligned tables, as kubectl and docker print them.

/// Spaces between two table columns (as kubectl and docker print them).
const COLUMN_GAP: usize = 3;

/// A table of text cells with a header, printed with aligned columns.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have as many cells as the header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "row width");
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Each column's width: that of its widest cell.
    fn widths(&self) -> Vec<usize> {
        let mut widths = vec![0; self.header.len()];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    /// The same table with the cells of the `shrinkable` columns cut (ending in `…`) so that
    /// lines fit in `width` characters where they can: a column gives up width down to its
    /// title's, the widest first.
    pub fn fit(mut self, width: usize, shrinkable: &[usize]) -> Self {
        let mut widths = self.widths();
        let total = |w: &[usize]| w.iter().sum::<usize>() + COLUMN_GAP * w.len().saturating_sub(1);
        while total(&widths) > width {
            let Some(&widest) = shrinkable
                .iter()
                .filter(|&&c| widths[c] > self.header[c].chars().count().max(MIN_CUT))
                .max_by_key(|&&c| widths[c])
            else {
                break;
            };
            widths[widest] -= 1;
        }
        for &column in shrinkable {
            for row in &mut self.rows {
                row[column] = cut(&row[column], widths[column]);
            }
        }
        self
    }

    /// The table as lines: each column as wide as its widest cell, the last one unpadded.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let widths = self.widths();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < columns {
                    let pad = widths[i] - cell.chars().count() + COLUMN_GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The narrowest a cut column gets: room for a few characters and the ellipsis.
const MIN_CUT: usize = 8;

/// `text` in at most `width` characters, ending in `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One line of a table printed as it streams: each cell padded to at least its minimum
/// width (a longer value pushes the rest right), three spaces between cells.
pub fn fixed_line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if i + 1 < cells.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + 3;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let mut out = out.trim_end().to_string();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_long_cells_with_an_ellipsis() {
        let mut table = Table::new(&["ID", "IMAGE", "AGE"]);
        table.row(vec![
            "1".into(),
            "registry.example.com/team/a-very-long-image-name:1.2.3".into(),
            "5s".into(),
        ]);
        let text = table.clone().fit(40, &[1]).render();
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.contains("registry.example.com/team/a-"), "{text}");
        assert!(text.contains("…   5s"), "{text}");
        assert_eq!(table.clone().fit(200, &[1]).render(), table.render());
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["ID", "NAME", "STATE"]);
        table.row(vec!["1".into(), "a-long-name".into(), "RUNNING".into()]);
        table.row(vec!["22".into(), "b".into(), "".into()]);
        assert_eq!(
            table.render(),
            "ID   NAME          STATE\n\
             1    a-long-name   RUNNING\n\
             22   b\n"
        );
    }
}
