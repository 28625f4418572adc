//! Render: turns validated payments into exactly the file a bank expects — ISO 20022 pain.001
//! (`pain001`) or a layout defined by a data file in `templates/` (`template`).
//!
//! Renderers are streams: payments are added one by one and the file is written at `finish`,
//! so a batch is never held in memory whole (per group, rendered records wait in a `Spill` that
//! moves to an unnamed temporary file past a megabyte). They never read the clock or the
//! database: creation time and ids come in through `BatchHeader`, so the same batch always
//! gives the same bytes.

pub mod pain001;
pub mod template;

use crate::config::{AddressMode, Config};
use crate::model::charset::Charset;
use crate::model::{Account, Address, BankId, Currency, Payment};
use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// Everything about a batch that is not a payment: who pays, from where, under which id.
#[derive(Debug, Clone)]
pub struct BatchHeader {
    /// Unique per batch, at most 30 characters (payment-information ids append `-N`).
    pub msg_id: String,
    pub created: DateTime<FixedOffset>,
    pub company_name: String,
    /// (scheme, id), e.g. ("USCC", "9131…"), ("LEI", "…"), ("BANK", "…").
    pub company_ids: Vec<(String, String)>,
    pub company_address: Option<Address>,
    pub debtor_account: Account,
    pub debtor_agent: Option<BankId>,
    pub debtor_currency: Currency,
    pub category_purpose: String,
    pub profile: Profile,
}

/// What a bank profile says about how to write its files.
#[derive(Debug, Clone)]
pub struct Profile {
    pub charset: Charset,
    pub address_mode: AddressMode,
    pub batch_booking: bool,
    pub service_level: Option<String>,
    pub charge_bearer: Option<String>,
    pub pretty: bool,
}

impl BatchHeader {
    /// The header for a batch of `channel` (which must exist in `cfg`).
    pub fn new(
        cfg: &Config,
        channel: &str,
        msg_id: String,
        created: DateTime<FixedOffset>,
    ) -> Option<BatchHeader> {
        let ch = cfg.channel(channel)?;
        let bank = cfg.banks.get(&ch.bank)?;
        let acct = cfg.company.accounts.get(&ch.debtor_account)?;
        let (debtor_account, debtor_agent) = acct.account().ok()?;
        Some(BatchHeader {
            msg_id,
            created,
            company_name: cfg.company.name.clone(),
            company_ids: cfg
                .company
                .identifiers
                .iter()
                .map(|i| (i.scheme.clone(), i.id.clone()))
                .collect(),
            company_address: cfg.company.address.clone(),
            debtor_account,
            debtor_agent,
            debtor_currency: acct.currency,
            category_purpose: ch.category_purpose().to_string(),
            profile: Profile {
                charset: bank.charset,
                address_mode: bank.address_mode,
                batch_booking: bank.batch_booking,
                service_level: bank.service_level.clone(),
                charge_bearer: bank.charge_bearer.clone(),
                pretty: bank.pretty_xml,
            },
        })
    }
}

/// A MsgId for a dry run, derived from the file's content: converting the same file twice gives
/// the same id, so a bank refuses an accidental second upload of the same payments.
pub fn content_msg_id(sha256_hex: &str) -> String {
    format!("PG{}", &sha256_hex[..28.min(sha256_hex.len())]).to_ascii_uppercase()
}

/// The end-to-end id of a payment that has none in its file.
pub fn generated_end_to_end_id(msg_id: &str, row: u64) -> String {
    format!("{}-{row}", &msg_id[..16.min(msg_id.len())])
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("writing the bank file: {0}")]
    Io(#[from] io::Error),
    /// A value the layout cannot hold (never cut off silently).
    #[error("{}field `{field}`: {problem} (value {value:?})", row_prefix(*.row))]
    Value {
        row: u64,
        field: String,
        value: String,
        problem: String,
    },
}

impl RenderError {
    /// A value the layout cannot take, as the finding the user sees at its row; an I/O error
    /// stays an error.
    pub fn into_finding(self) -> Result<crate::finding::Finding, io::Error> {
        match self {
            RenderError::Value {
                row,
                field,
                value,
                problem,
            } => Ok(crate::finding::Finding::error(
                "layout.value",
                format!("does not fit the bank's layout: field `{field}` {problem}"),
            )
            .at(row)
            .value(value)),
            RenderError::Io(e) => Err(e),
        }
    }
}

fn row_prefix(row: u64) -> String {
    if row > 0 {
        format!("row {row}, ")
    } else {
        String::new()
    }
}

/// What was written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub payments: u64,
    pub totals: BTreeMap<Currency, Decimal>,
    /// Sum of all amounts, as ISO 20022 CtrlSum counts it.
    pub control_sum: Decimal,
    pub bytes: u64,
}

/// A bank file being written.
pub trait BankFile: Send {
    fn add(&mut self, p: &Payment, end_to_end_id: &str) -> Result<(), RenderError>;
    /// Writes the whole file to `out`.
    fn finish(self: Box<Self>, out: &mut dyn Write) -> Result<Summary, RenderError>;
}

/// The output formats: built-in pain.001 versions and the templates in `dir`.
pub fn formats(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pain001::Version::ALL
        .iter()
        .map(|v| (v.name().to_string(), v.description().to_string()))
        .collect();
    for (name, t) in template::Template::load_all(dir) {
        let desc = match t {
            Ok(t) => t.description,
            Err(e) => format!("(broken: {e})"),
        };
        v.push((name, desc));
    }
    v
}

/// Opens a renderer for `format` (a pain.001 version or a template name in `templates_dir`).
pub fn open(
    format: &str,
    templates_dir: &Path,
    header: BatchHeader,
) -> Result<Box<dyn BankFile>, FormatError> {
    if let Some(v) = pain001::Version::parse(format) {
        return Ok(Box::new(pain001::Pain001::new(v, header)));
    }
    let t = template::Template::load(templates_dir, format)?;
    Ok(Box::new(template::TemplateFile::new(t, header)))
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "unknown format `{name}`: not a pain.001 version and no template {path} (see `paygate formats`)"
    )]
    Unknown { name: String, path: String },
    #[error("template {path}: {problems}")]
    BadTemplate { path: String, problems: String },
}

/// Rendered records waiting for their block's header: in memory up to a megabyte, then in an
/// unnamed temporary file (removed by the OS when closed, even after a crash).
pub(crate) struct Spill {
    buf: Vec<u8>,
    file: Option<std::fs::File>,
}

const SPILL_AT: usize = 1 << 20;

impl Spill {
    pub(crate) fn new() -> Spill {
        Spill {
            buf: Vec::new(),
            file: None,
        }
    }

    /// Copies everything written so far to `out`.
    pub(crate) fn drain_into(mut self, out: &mut dyn Write) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.write_all(&self.buf)?;
            f.flush()?;
            f.rewind()?;
            let mut r = io::BufReader::with_capacity(SPILL_AT, f);
            let mut chunk = vec![0u8; SPILL_AT];
            loop {
                let n = r.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                out.write_all(&chunk[..n])?;
            }
            Ok(())
        } else {
            out.write_all(&self.buf)
        }
    }
}

impl Write for Spill {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= SPILL_AT {
            let f = match &mut self.file {
                Some(f) => f,
                None => self.file.insert(tempfile::tempfile()?),
            };
            f.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts what passes through, for the summary.
pub(crate) struct Counting<'a> {
    pub inner: &'a mut dyn Write,
    pub bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Payments cross to the rendering thread in chunks of this many.
const RENDER_CHUNK: usize = 1024;

/// What rendering does with each chunk of payments once they are rendered (the daemon stores
/// them).
pub type Forward = Box<dyn FnMut(Vec<Payment>) + Send>;

/// Renders payments as validation yields them: on a thread of its own (`threads = 2`: the
/// reading and validating thread and this one keep both cores at work) or on the caller's
/// (`threads = 1`). Either way each payment is added in the order it came, so the bank file
/// and the findings are the same byte for byte. A value the layout cannot take becomes a
/// finding at its row; the first I/O error is kept.
pub struct Renderer {
    chunk: Vec<Payment>,
    how: How,
}

enum How {
    Inline(Box<Rendering>),
    Thread {
        tx: std::sync::mpsc::SyncSender<Vec<Payment>>,
        handle: std::thread::JoinHandle<Rendering>,
    },
}

/// The state of a rendering, and its outcome once `Renderer::finish` returns it.
pub struct Rendering {
    pub file: Box<dyn BankFile>,
    /// Values the layout could not take, in row order.
    pub findings: crate::finding::Findings,
    pub io_error: Option<io::Error>,
    /// Payments rendered.
    pub count: u64,
    msg_id: String,
    forward: Option<Forward>,
}

impl Rendering {
    fn add(&mut self, chunk: Vec<Payment>) {
        for p in &chunk {
            let generated;
            let e2e = match &p.end_to_end_id {
                Some(id) => id.as_str(),
                None => {
                    generated = generated_end_to_end_id(&self.msg_id, p.row);
                    &generated
                }
            };
            if let Err(e) = self.file.add(p, e2e) {
                match e.into_finding() {
                    Ok(f) => self.findings.push(f),
                    Err(e) => {
                        self.io_error.get_or_insert(e);
                    }
                }
            }
            self.count += 1;
        }
        if let Some(f) = &mut self.forward {
            f(chunk);
        }
    }
}

impl Renderer {
    /// Starts rendering into `file`; payments without an end-to-end id get one generated from
    /// `msg_id` and their row.
    pub fn start(
        file: Box<dyn BankFile>,
        msg_id: &str,
        forward: Option<Forward>,
        threads: usize,
    ) -> Renderer {
        let state = Box::new(Rendering {
            file,
            findings: crate::finding::Findings::new(),
            io_error: None,
            count: 0,
            msg_id: msg_id.to_string(),
            forward,
        });
        let how = if threads >= 2 {
            // The state goes to the thread through a slot, so that it can be taken back and
            // rendered inline if no thread can be started (a pids limit, say).
            let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(state)));
            let theirs = slot.clone();
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Payment>>(4);
            let spawned = std::thread::Builder::new()
                .name("paygate-render".into())
                .spawn(move || {
                    let taken = theirs.lock().map(|mut s| s.take()).ok().flatten();
                    let mut state = taken.expect("the rendering state is handed over once");
                    for chunk in rx {
                        state.add(chunk);
                    }
                    *state
                });
            match spawned {
                Ok(handle) => How::Thread { tx, handle },
                Err(e) => {
                    tracing::warn!(
                        "rendering on the reading thread: no thread could be started ({e})"
                    );
                    let state = slot
                        .lock()
                        .map(|mut s| s.take())
                        .ok()
                        .flatten()
                        .expect("the thread never started, so the state is still here");
                    How::Inline(state)
                }
            }
        } else {
            How::Inline(state)
        };
        Renderer {
            chunk: Vec::with_capacity(RENDER_CHUNK),
            how,
        }
    }

    pub fn add(&mut self, p: Payment) {
        self.chunk.push(p);
        if self.chunk.len() >= RENDER_CHUNK {
            self.send();
        }
    }

    fn send(&mut self) {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(RENDER_CHUNK));
        match &mut self.how {
            How::Inline(state) => state.add(chunk),
            // A closed channel means the thread panicked; `finish` passes the panic on.
            How::Thread { tx, .. } => {
                let _ = tx.send(chunk);
            }
        }
    }

    /// Renders what is left and returns the rendering, ready for `file.finish`; the forward
    /// is dropped (whoever receives the chunks sees the end).
    pub fn finish(mut self) -> Rendering {
        if !self.chunk.is_empty() {
            self.send();
        }
        let mut state = match self.how {
            How::Inline(state) => *state,
            How::Thread { tx, handle } => {
                drop(tx);
                match handle.join() {
                    Ok(state) => state,
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        };
        state.forward = None;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spill_moves_to_a_file_and_keeps_every_byte() {
        let mut s = Spill::new();
        let mut want = Vec::new();
        for i in 0..300_000u32 {
            let line = format!("<Tx>{i}</Tx>\n");
            s.write_all(line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
        }
        assert!(s.file.is_some(), "3+ MB should have spilled");
        let mut out = Vec::new();
        s.drain_into(&mut out).unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn ids_fit_iso_20022_limits() {
        let id = content_msg_id(&"ab".repeat(32));
        assert_eq!(id.len(), 30);
        assert!(id.starts_with("PGABAB"));
        assert!(generated_end_to_end_id(&id, 1_000_000).len() <= 35);
    }
}
