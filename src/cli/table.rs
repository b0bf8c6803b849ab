//! Plain aligned text tables for terminal output.

/// Renders rows with columns padded to their widest cell, two spaces apart.
pub fn render(indent: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{indent}{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let out = super::render("  ", &["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(out, "  A    BB\n  xxx  y\n");
    }
}
