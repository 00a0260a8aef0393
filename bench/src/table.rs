//! Tables for the benchmark reports: aligned plain text for the terminal and GitHub-flavoured
//! markdown for `docs/benchmarks.md`. The first column is a label (left-aligned), the others
//! are figures (right-aligned).

use std::fmt::Write as _;

/// `headers` then `rows` as aligned text, two spaces between columns, one line each (trailing
/// spaces trimmed). Every row has `headers.len()` cells; widths count `char`s.
pub fn text<S: AsRef<str>>(headers: &[S], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].as_ref().chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 0 {
                let _ = write!(s, "{cell}{:pad$}", "");
            } else {
                let _ = write!(s, "  {:pad$}{cell}", "");
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().map(AsRef::as_ref));
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

/// `headers` then `rows` as a markdown table, figures right-aligned.
pub fn markdown<S: AsRef<str>>(headers: &[S], rows: &[Vec<String>]) -> String {
    let headers: Vec<&str> = headers.iter().map(AsRef::as_ref).collect();
    let mut out = format!("| {} |\n", headers.join(" | "));
    out += &format!(
        "| --- |{}\n",
        " ---: |".repeat(headers.len().saturating_sub(1))
    );
    for row in rows {
        out += &format!("| {} |\n", row.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_aligns_labels_left_and_figures_right() {
        let rows = vec![
            vec!["a".to_owned(), "1".to_owned()],
            vec!["bcd".to_owned(), "23×".to_owned()],
        ];
        assert_eq!(
            super::text(&["x", "n"], &rows),
            "x      n\na      1\nbcd  23×\n"
        );
        assert_eq!(
            super::markdown(&["x", "n"], &rows),
            "| x | n |\n| --- | ---: |\n| a | 1 |\n| bcd | 23× |\n"
        );
    }
}
