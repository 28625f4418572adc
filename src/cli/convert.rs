//! `paygate convert FILE`: intake + validation + rendering as a dry run. Writes the bank file
//! (or to stdout) only when the input has no errors; nothing is stored or sent.

use super::validate::{pick_channel, render as render_report, write_findings};
use super::{Exit, load_config};
use crate::render::{self, BatchHeader, RenderError};
use crate::validate::{Rules, validate_table};
use chrono::{DateTime, FixedOffset, NaiveDate};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The payment file (CSV, .xlsx, .xls or .ods)
    file: PathBuf,
    /// Channel whose settings apply [default: the only channel, or the one whose folder holds FILE]
    #[arg(long)]
    channel: Option<String>,
    /// Output format: a pain.001 version or a template name [default: the bank's `format`]
    #[arg(long)]
    format: Option<String>,
    /// Write the bank file here (atomically) instead of to standard output
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Validate as if today were DATE (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    as_of: Option<NaiveDate>,
    /// Message id [default: derived from the file's content, so the same file gives the same id]
    #[arg(long, value_name = "ID")]
    msg_id: Option<String>,
    /// Creation time written into the file, RFC 3339 [default: now]
    #[arg(long, value_name = "TIME")]
    created: Option<DateTime<FixedOffset>>,
    /// Also write every finding to this CSV file (the report shows the first few of each kind)
    #[arg(long, value_name = "CSV")]
    findings: Option<PathBuf>,
    /// 2: render on a thread of its own while the file is read and validated; 1: all on one
    /// thread. The output is the same byte for byte.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    threads: u8,
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
    let ch = &cfg.channels[&channel];
    let bank = cfg.bank_of(ch);
    let Some(format) = args.format.clone().or_else(|| bank.format.clone()) else {
        eprintln!(
            "paygate: bank `{}` has no `format`; set banks.{}.format in the config or pass --format (see `paygate formats`)",
            ch.bank, ch.bank
        );
        return Exit::Usage;
    };
    // Refused by size before a byte is read (not even hashed).
    if let Ok(m) = std::fs::metadata(&args.file)
        && m.is_file()
        && let Err(e) = crate::intake::check_size(&args.file, m.len(), ch)
    {
        eprintln!("paygate: {e}");
        return Exit::Usage;
    }
    let sha = match crate::delivery::sha256_file(&args.file) {
        Ok((s, _)) => s,
        Err(e) => {
            eprintln!("paygate: {}: {e}", args.file.display());
            return Exit::Usage;
        }
    };
    let msg_id = args
        .msg_id
        .clone()
        .unwrap_or_else(|| render::content_msg_id(&sha));
    if msg_id.is_empty() || msg_id.chars().count() > 30 || !msg_id.is_ascii() {
        eprintln!(
            "paygate: --msg-id must be 1 to 30 ASCII characters (payment-information ids add a suffix to it)"
        );
        return Exit::Usage;
    }
    let created = args
        .created
        .unwrap_or_else(|| chrono::Local::now().fixed_offset());
    let today = args
        .as_of
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let (Some(rules), Some(header)) = (
        Rules::new(&cfg, &channel, today),
        BatchHeader::new(&cfg, &channel, msg_id.clone(), created),
    ) else {
        eprintln!("paygate: channel `{channel}` is not usable; run `paygate check-config`");
        return Exit::Config;
    };
    let file = match render::open(&format, &cfg.templates_dir(), header) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("paygate: {e}");
            return match e {
                render::FormatError::Unknown { .. } => Exit::Usage,
                render::FormatError::BadTemplate { .. } => Exit::Config,
            };
        }
    };
    let mut renderer = render::Renderer::start(file, &msg_id, None, args.threads.into());
    let result = crate::intake::open(&args.file, ch)
        .and_then(|mut table| validate_table(&mut table, &rules, ch, |p| renderer.add(p)));
    let rendering = renderer.finish();
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paygate: {e}");
            return Exit::Usage;
        }
    };
    if let Some(e) = rendering.io_error {
        eprintln!("paygate: while rendering: {e}");
        return Exit::Usage;
    }
    report.findings.absorb(rendering.findings);
    let file = rendering.file;
    if let Some(path) = &args.findings
        && let Err(e) = write_findings(path, &report, ch)
    {
        eprintln!("paygate: {e}");
        return Exit::Usage;
    }
    let to_stdout = args.output.is_none();
    let show = |s: &str| {
        if to_stdout {
            eprint!("{s}")
        } else {
            print!("{s}")
        }
    };
    if report.errors() > 0 || !report.findings.is_empty() {
        show(&render_report(
            &report,
            &ch.bank,
            "convert",
            args.findings.as_deref(),
        ));
    }
    if report.errors() > 0 {
        show("nothing written: fix the errors above and convert again\n");
        return Exit::InputErrors;
    }
    let written = match &args.output {
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            file.finish(&mut w).map_err(finish_error).and_then(|s| {
                w.flush()
                    .map(|_| s)
                    .map_err(|e| (e.to_string(), Exit::Usage))
            })
        }
        Some(out) => write_atomically(out, file),
    };
    match written {
        Ok(summary) => {
            let totals: Vec<String> = summary
                .totals
                .iter()
                .map(|(c, a)| format!("{a} {c}"))
                .collect();
            show(&format!(
                "{} payments ({}) · MsgId {msg_id} · {format} · {}\n",
                summary.payments,
                totals.join(" + "),
                match &args.output {
                    Some(p) => format!("wrote {} ({} bytes)", p.display(), summary.bytes),
                    None => format!("{} bytes to standard output", summary.bytes),
                }
            ));
            Exit::Ok
        }
        Err((e, exit)) => {
            eprintln!("paygate: {e}");
            exit
        }
    }
}

/// A value the layout cannot take is a problem of the input (exit 1); anything else is I/O.
fn finish_error(e: RenderError) -> (String, Exit) {
    let exit = match e {
        RenderError::Value { .. } => Exit::InputErrors,
        RenderError::Io(_) => Exit::Usage,
    };
    (format!("nothing written: {e}"), exit)
}

/// Writes to a temporary file beside `out`, synced, then renamed: `out` is complete or absent.
/// A device or pipe (`/dev/null`, a FIFO) is written to directly: it must never be replaced.
fn write_atomically(
    out: &Path,
    file: Box<dyn render::BankFile>,
) -> Result<render::Summary, (String, Exit)> {
    let fail = |e: &dyn std::fmt::Display| (format!("{}: {e}", out.display()), Exit::Usage);
    if let Ok(meta) = std::fs::metadata(out)
        && !meta.is_file()
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(out)
            .map_err(|e| fail(&e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let summary = file.finish(&mut w).map_err(finish_error)?;
        w.flush().map_err(|e| fail(&e))?;
        return Ok(summary);
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| (format!("{}: {e}", dir.display()), Exit::Usage))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let summary = file.finish(&mut w).map_err(finish_error)?;
    let tmp = w
        .into_inner()
        .map_err(|e| (format!("{}: {e}", out.display()), Exit::Usage))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| (format!("{}: {e}", out.display()), Exit::Usage))?;
    tmp.persist(out)
        .map_err(|e| (format!("{}: {e}", out.display()), Exit::Usage))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(summary)
}
