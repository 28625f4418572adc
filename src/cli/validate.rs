//! `paygate validate FILE`: intake + validation as a dry run, with a readable report.

use super::{Exit, load_config};
use crate::finding::{SAMPLE_PER_CODE, Severity};
use crate::validate::{Report, Rules, validate_table};
use chrono::NaiveDate;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The payment file (CSV, .xlsx, .xls or .ods)
    file: PathBuf,
    /// Channel whose settings apply [default: the only channel, or the one whose folder holds FILE]
    #[arg(long)]
    channel: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
    /// Validate as if today were DATE (YYYY-MM-DD), e.g. to reproduce an earlier report
    #[arg(long, value_name = "DATE")]
    as_of: Option<NaiveDate>,
    /// Also write every finding to this CSV file (the report shows the first few of each kind)
    #[arg(long, value_name = "CSV")]
    findings: Option<PathBuf>,
}

/// `--json`: the report with every finding, streamed to the writer.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    report: &'a Report,
    errors: u64,
    warnings: u64,
}

/// Writes every finding of `report` to `path` as CSV, in the channel's report language.
pub(crate) fn write_findings(
    path: &Path,
    report: &Report,
    ch: &crate::config::Channel,
) -> Result<(), String> {
    crate::results::write_findings_csv(path, &report.findings, ch.report_language)
        .map_err(|e| format!("{}: {e}", path.display()))
}

pub fn run(args: Args, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let channel = match pick_channel(&cfg, args.channel.as_deref(), &args.file) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("paygate: {msg}");
            return Exit::Usage;
        }
    };
    let today = args
        .as_of
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let Some(rules) = Rules::new(&cfg, &channel, today) else {
        eprintln!("paygate: channel `{channel}` is not usable; run `paygate check-config`");
        return Exit::Config;
    };
    let ch = &cfg.channels[&channel];
    let report = match crate::intake::open(&args.file, ch)
        .and_then(|mut table| validate_table(&mut table, &rules, ch, |_| {}))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paygate: {e}");
            return Exit::Usage;
        }
    };
    if let Some(path) = &args.findings
        && let Err(e) = write_findings(path, &report, ch)
    {
        eprintln!("paygate: {e}");
        return Exit::Usage;
    }
    if args.json {
        let out = JsonReport {
            report: &report,
            errors: report.errors(),
            warnings: report.warnings(),
        };
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        let written = serde_json::to_writer_pretty(&mut w, &out)
            .map_err(std::io::Error::from)
            .and_then(|()| std::io::Write::write_all(&mut w, b"\n"))
            .and_then(|()| std::io::Write::flush(&mut w));
        if let Err(e) = written {
            eprintln!("paygate: writing the report: {e}");
            return Exit::Usage;
        }
    } else {
        print!(
            "{}",
            render(&report, &ch.bank, "validate", args.findings.as_deref())
        );
    }
    if report.errors() > 0 {
        Exit::InputErrors
    } else {
        Exit::Ok
    }
}

/// The channel named, the only one, or the one whose folder holds the file.
pub(crate) fn pick_channel(
    cfg: &crate::config::Config,
    named: Option<&str>,
    file: &Path,
) -> Result<String, String> {
    let names = || cfg.channels.keys().cloned().collect::<Vec<_>>().join(", ");
    if let Some(n) = named {
        return if cfg.channels.contains_key(n) {
            Ok(n.to_string())
        } else {
            Err(format!(
                "no channel `{n}` in the config (channels: {})",
                names()
            ))
        };
    }
    if cfg.channels.len() == 1 {
        return Ok(cfg.channels.keys().next().cloned().unwrap_or_default());
    }
    match cfg.channels_for_file(file).first() {
        Some(n) => Ok(n.to_string()),
        None => Err(format!(
            "{} is not inside a channel's folder; say which channel's rules apply with --channel ({})",
            file.display(),
            names()
        )),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Display width: CJK characters take two columns in a terminal.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            if ('\u{1100}'..='\u{ffdc}').contains(&c) && !('\u{2000}'..='\u{2fff}').contains(&c) {
                2
            } else {
                1
            }
        })
        .sum()
}

fn pad(s: &str, w: usize) -> String {
    format!("{s}{}", " ".repeat(w.saturating_sub(width(s))))
}

/// The human report: where each problem is, what was found, what to do (the first
/// `SAMPLE_PER_CODE` of each kind, then how many more and where they are); a summary line.
pub(crate) fn render(r: &Report, bank: &str, verb: &str, all_in: Option<&Path>) -> String {
    use crate::intake::SourceFormat;
    let mut out = String::new();
    let fmt = match &r.format {
        SourceFormat::Csv {
            encoding,
            delimiter,
        } => format!("CSV, {encoding}, delimiter \"{delimiter}\""),
        SourceFormat::Xlsx { sheet } => format!("Excel workbook, sheet \"{sheet}\""),
        SourceFormat::Xls { sheet } => format!("Excel 97-2003 workbook, sheet \"{sheet}\""),
        SourceFormat::Ods { sheet } => format!("OpenDocument spreadsheet, sheet \"{sheet}\""),
    };
    out.push_str(&format!(
        "{}\n  channel {} (bank {bank}) · {fmt}",
        r.file.display(),
        r.channel
    ));
    if let Some(h) = r.header_row {
        out.push_str(&format!(" · header on row {h}"));
    }
    out.push('\n');
    if !r.columns.is_empty() {
        let used: Vec<String> = r
            .columns
            .iter()
            .map(|(c, f)| format!("{} {} → {f}", c.letter, c.name))
            .collect();
        out.push_str(&format!("  columns: {}\n", used.join(", ")));
    }
    if !r.ignored_columns.is_empty() {
        let ign: Vec<String> = r
            .ignored_columns
            .iter()
            .map(|c| format!("{} {}", c.letter, c.name))
            .collect();
        out.push_str(&format!("  not used: {}\n", ign.join(", ")));
    }
    let shown = r.findings.sample();
    if !shown.is_empty() {
        let rows: Vec<[String; 5]> = shown
            .iter()
            .map(|f| {
                [
                    f.row.map_or("-".into(), |n| n.to_string()),
                    f.column.as_ref().map_or("-".into(), |c| {
                        shorten(&format!("{} {}", c.letter, c.name), 24)
                    }),
                    match f.severity {
                        Severity::Error => "error".into(),
                        Severity::Warning => "warning".into(),
                    },
                    f.code.to_string(),
                    f.value
                        .as_ref()
                        .map_or(String::new(), |v| shorten(&format!("{v:?}"), 30)),
                ]
            })
            .collect();
        let heads = ["ROW", "COLUMN", "SEVERITY", "CODE", "VALUE"];
        let mut w = heads.map(width);
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                w[i] = w[i].max(width(cell));
            }
        }
        out.push('\n');
        let line = |cells: [&str; 5], msg: &str| {
            format!(
                "  {:>rw$}  {}  {}  {}  {}  {msg}\n",
                cells[0],
                pad(cells[1], w[1]),
                pad(cells[2], w[2]),
                pad(cells[3], w[3]),
                pad(cells[4], w[4]),
                rw = w[0]
            )
        };
        out.push_str(&line(heads, "PROBLEM"));
        for (row, f) in rows.iter().zip(&shown) {
            out.push_str(&line(
                [&row[0], &row[1], &row[2], &row[3], &row[4]],
                &f.message,
            ));
        }
        let more: Vec<String> = r
            .findings
            .counts()
            .iter()
            .filter(|c| c.count > SAMPLE_PER_CODE as u64)
            .map(|c| {
                format!(
                    "  … {} more {} {}{} not shown ({} in all)\n",
                    group_int(c.count - SAMPLE_PER_CODE as u64),
                    c.code,
                    c.severity,
                    if c.count - SAMPLE_PER_CODE as u64 == 1 {
                        ""
                    } else {
                        "s"
                    },
                    group_int(c.count)
                )
            })
            .collect();
        if !more.is_empty() {
            out.push('\n');
            out.extend(more);
            out.push_str(&match all_in {
                Some(p) => format!("  every finding is in {}\n", p.display()),
                None => format!(
                    "  every finding: add --findings FILE.csv{} to `paygate {verb} {}`\n",
                    if verb == "validate" {
                        " (or --json)"
                    } else {
                        ""
                    },
                    r.file.display()
                ),
            });
        }
        out.push('\n');
    }
    let totals: Vec<String> = r
        .totals
        .iter()
        .map(|(c, a)| format!("{} {c}", group(*a)))
        .collect();
    out.push_str(&format!(
        "{} rows, {} valid payment{}{}; {} error{}, {} warning{}\n",
        r.rows,
        r.payments,
        if r.payments == 1 { "" } else { "s" },
        if totals.is_empty() {
            String::new()
        } else {
            format!(" totalling {}", totals.join(" + "))
        },
        r.errors(),
        if r.errors() == 1 { "" } else { "s" },
        r.warnings(),
        if r.warnings() == 1 { "" } else { "s" },
    ));
    out
}

fn group_int(n: u64) -> String {
    group(rust_decimal::Decimal::from(n))
}

/// `1234567.5` -> `1,234,567.50` (the value keeps its scale).
fn group(d: rust_decimal::Decimal) -> String {
    let s = d.to_string();
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}
