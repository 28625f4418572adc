//! The TOML configuration: types, loading, and the checks that report every problem at once,
//! each naming its key and what to do. Reads the config file; never touches anything else.

use crate::finding::Severity;
use crate::model::charset::Charset;
use crate::model::{Account, BankId, Bic, ChannelKind, Cnaps, Currency, DomesticAccount, Iban};
use chrono::{Datelike, NaiveDate, Weekday};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/paygate/paygate.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub paygate: General,
    pub company: Company,
    pub banks: BTreeMap<String, Bank>,
    pub channels: BTreeMap<String, Channel>,
    /// The archive key: every file kept for the audit is stored encrypted to it.
    #[serde(default)]
    pub archive: Option<ArchiveCfg>,
    /// Who is told what needs a person, and how.
    #[serde(default)]
    pub alerts: Alerts,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: Option<MetricsCfg>,
    /// Where the store is: the embedded SQLite file by default, or a PostgreSQL database that
    /// several instances share.
    #[serde(default)]
    pub store: Option<StoreCfg>,
    /// The directory of the config file; relative paths in it are resolved from here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct General {
    /// Store, archive of every file sent and received, spool.
    pub data_dir: PathBuf,
    /// `sqlite:` URL; default `sqlite://<data_dir>/paygate.db`.
    #[serde(default)]
    pub database: Option<String>,
    /// Bank holidays: never chosen as a default execution date.
    #[serde(default)]
    pub holidays: Vec<NaiveDate>,
    /// Folder of the bank layout templates (`NAME.toml`).
    #[serde(default = "default_templates_dir")]
    pub templates_dir: PathBuf,
    /// The daemon's control socket (`paygate approve`, `status`, …); default
    /// `<data_dir>/paygate.sock`. Mode 0660: whoever may approve must be in its group.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Group of the control socket (e.g. `paygate`); default: the daemon's own group.
    #[serde(default)]
    pub control_group: Option<String>,
    /// Files processed at the same time (reading, validating, sealing, uploading).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// On SIGTERM, how long steps in flight may take to finish before the daemon exits.
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// The bootstrap admin: the OS user who holds the `admin` role on every channel from the
    /// config (everyone else's roles are granted with `paygate users`). `paygate run` needs it.
    #[serde(default)]
    pub admin: Option<String>,
    /// The key file of the payment data in the store (AES-256-GCM, mode 0600); default a
    /// systemd credential `paygate-data-key`, else `<data_dir>/keys/data.key`.
    #[serde(default)]
    pub data_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveCfg {
    /// The archive key's certificate (public part); auditors hold its secret key.
    pub cert: PathBuf,
    /// Its pinned fingerprint.
    pub fingerprint: String,
}

/// The database behind a store. Every statement is written once, in the SQL both dialects
/// share (`$N` parameters, `ON CONFLICT`, `RETURNING`, `IS NOT DISTINCT FROM`); the few
/// places they differ ask `Backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one instance.
    Sqlite,
    /// One database for several instances.
    Postgres,
}

impl Backend {
    /// The backend a store URL names: `sqlite:` or `postgres://` (`postgresql://`).
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// A store URL with its password (if any) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCfg {
    /// `sqlite:///path/paygate.db`, or `postgres://USER@HOST:PORT/DB` with the options
    /// PostgreSQL's own URLs take (`sslmode=verify-full&sslrootcert=/etc/paygate/db-ca.pem`).
    /// No password here: see `password_file`.
    pub url: String,
    /// A file holding the PostgreSQL password (mode 0600, or a systemd credential); default
    /// the credential `paygate-db-password` when the service has one, else none (peer,
    /// certificate or trust authentication).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How long an instance's claims (a batch's step, a bank's return poller) outlive its
    /// last heartbeat: after this another instance takes over its work. Heartbeats come every
    /// third of it.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_lease_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsCfg {
    /// Address of the `/metrics` endpoint; loopback unless `allow_remote`.
    #[serde(default = "default_metrics_listen")]
    pub listen: String,
    /// Serve on a non-loopback address (put it behind a firewall or a proxy with TLS).
    #[serde(default)]
    pub allow_remote: bool,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9464".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// The same alert (same kind and subject) is not sent again within this many minutes.
    #[serde(default = "default_repeat_mins")]
    pub repeat_after_mins: u64,
    /// The bank unreachable (uploads or polls failing) for longer than this.
    #[serde(default = "default_unreachable_mins")]
    pub bank_unreachable_mins: u64,
    /// A sent batch with no final bank status after this many hours.
    #[serde(default = "default_status_hours")]
    pub status_deadline_hours: u64,
    /// Free space below this on the data or a channel's volume.
    #[serde(default = "default_disk_mb")]
    pub disk_free_min_mb: u64,
    /// Refused approvals or permission errors from one user within an hour before alerting.
    #[serde(default = "default_refusals")]
    pub refusals_per_hour: u64,
    /// A key (company, bank, archive) expiring within this many days.
    #[serde(default = "default_key_days")]
    pub key_expiry_days: u64,
    /// How often the daemon looks for overdue statuses, unreachable banks, expiring keys,
    /// the audit chain and free disk space.
    #[serde(default = "default_check_secs")]
    pub check_secs: u64,
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    #[serde(default)]
    pub email: Option<Email>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            repeat_after_mins: default_repeat_mins(),
            bank_unreachable_mins: default_unreachable_mins(),
            status_deadline_hours: default_status_hours(),
            disk_free_min_mb: default_disk_mb(),
            refusals_per_hour: default_refusals(),
            key_expiry_days: default_key_days(),
            check_secs: default_check_secs(),
            webhooks: Vec::new(),
            email: None,
        }
    }
}

fn default_repeat_mins() -> u64 {
    60
}
fn default_unreachable_mins() -> u64 {
    30
}
fn default_status_hours() -> u64 {
    24
}
fn default_disk_mb() -> u64 {
    1024
}
fn default_refusals() -> u64 {
    3
}
fn default_key_days() -> u64 {
    30
}
fn default_check_secs() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `https://…` (or `http://` to a loopback address): a JSON POST per alert, with a `text`
    /// field as WeCom, DingTalk and Slack incoming webhooks read it.
    pub url: String,
    /// Only these alert kinds (default: all).
    #[serde(default)]
    pub kinds: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS is required; the server's certificate is verified.
    #[default]
    Starttls,
    /// Implicit TLS (port 465).
    Tls,
    /// No TLS: only to a loopback relay (a local MTA).
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// SMTP relay host.
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    /// A PEM file of extra root certificates the relay's certificate may chain to.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the SMTP password (mode 0600).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    pub from: String,
    /// Who receives every alert (the treasury operations desk).
    #[serde(default)]
    pub to: Vec<String>,
    /// Email addresses of paygate's users (OS names), for alerts meant for them: approvers
    /// of a waiting batch, the submitter of a rejected file.
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// Only these alert kinds (default: all).
    #[serde(default)]
    pub kinds: Vec<String>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_workers() -> usize {
    2
}
fn default_drain_secs() -> u64 {
    30
}

fn default_templates_dir() -> PathBuf {
    PathBuf::from("/usr/share/paygate/templates")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Company {
    pub name: String,
    /// ISO 3166 country of the company's seat.
    pub country: String,
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    /// Postal address, sent as the debtor's in the bank's address mode.
    #[serde(default)]
    pub address: Option<crate::model::Address>,
    /// Short name used in remote file names (`{company}`); default: the name's letters and digits.
    #[serde(default)]
    pub short_name: Option<String>,
    /// The company's OpenPGP key, which signs what is sent and decrypts what comes back.
    #[serde(default)]
    pub pgp: Option<CompanyPgp>,
    pub accounts: BTreeMap<String, DebtorAccountCfg>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    /// e.g. `USCC` (统一社会信用代码), `LEI`, `BANK` (customer number given by the bank).
    pub scheme: String,
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebtorAccountCfg {
    #[serde(default)]
    pub iban: Option<String>,
    /// Domestic account number, when the account has no IBAN.
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub bic: Option<String>,
    #[serde(default)]
    pub cnaps: Option<String>,
    pub currency: Currency,
    /// Hard limit: the most that may leave this account in one day (local calendar day),
    /// summed over every channel paying from it. A batch that would pass it is declined.
    #[serde(default)]
    pub max_daily_total: Option<Decimal>,
}

/// How a bank wants postal addresses (ISO 20022 PostalAddress).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddressMode {
    #[default]
    None,
    Structured,
    Hybrid,
    Unstructured,
}

/// What identifies the creditor's bank for a domestic (non-IBAN) account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DomesticBankCode {
    #[default]
    Cnaps,
    Bic,
    Optional,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bank {
    pub name: String,
    #[serde(default)]
    pub bic: Option<String>,
    /// Output format: a built-in pain.001 version or a template name (see `paygate formats`).
    #[serde(default)]
    pub format: Option<String>,
    pub currencies: Vec<Currency>,
    #[serde(default)]
    pub charset: Charset,
    #[serde(default = "default_name_len")]
    pub max_name_length: usize,
    #[serde(default = "default_remittance_len")]
    pub max_remittance_length: usize,
    /// Allowed digits of a domestic account number, `[min, max]`.
    #[serde(default = "default_domestic_digits")]
    pub domestic_account_digits: [usize; 2],
    #[serde(default)]
    pub domestic_bank_code: DomesticBankCode,
    /// Whether IBAN payments need the creditor's BIC (SEPA does not; most cross-border does).
    #[serde(default)]
    pub require_bic: bool,
    #[serde(default)]
    pub address_mode: AddressMode,
    #[serde(default = "yes")]
    pub batch_booking: bool,
    /// ISO 20022 service level for EUR payment blocks, e.g. `SEPA`.
    #[serde(default)]
    pub service_level: Option<String>,
    /// ISO 20022 charge bearer (`SLEV`, `SHAR`, `DEBT`, `CRED`); default `SLEV` with the `SEPA`
    /// service level, else `SHAR`.
    #[serde(default)]
    pub charge_bearer: Option<String>,
    /// Indent generated XML: easier for people to read, but about 80% larger and slower to
    /// write and send; banks do not need it.
    #[serde(default)]
    pub pretty_xml: bool,
    #[serde(default)]
    pub pgp: Option<BankPgp>,
    /// `openpgp` (default): every file is signed and encrypted. `none` only for a bank whose
    /// SFTP channel is its only protection; logged at every start.
    #[serde(default)]
    pub encryption: Encryption,
    #[serde(default)]
    pub transport: Option<Transport>,
    /// How often the daemon looks for the bank's return files (backing off while the bank is
    /// unreachable).
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
}

fn default_poll_secs() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    #[default]
    Openpgp,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyPgp {
    /// The company's secret key file (ASCII-armored or binary); must not be readable by others.
    pub secret_key: PathBuf,
    /// Pinned fingerprint of that key.
    pub fingerprint: String,
    /// A file holding the passphrase, when the secret key is protected by one.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zip,
    Zlib,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankPgp {
    /// The bank's public key files; several during a key rotation.
    pub keys: Vec<PathBuf>,
    /// Pinned fingerprints, one per key file, in the same order.
    pub fingerprints: Vec<String>,
    #[serde(default = "yes")]
    pub armor: bool,
    #[serde(default)]
    pub compression: Compression,
    /// Also encrypt to the company key, so that the archived copy stays readable.
    #[serde(default = "yes")]
    pub encrypt_to_self: bool,
    /// Refuse unsigned files from the bank. Turn off only for a bank that does not sign.
    #[serde(default = "yes")]
    pub require_signature: bool,
    #[serde(default = "default_expiry_warning")]
    pub expiry_warning_days: u32,
}

fn default_final_status_days() -> u32 {
    5
}

fn default_expiry_warning() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Sftp,
    Folder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AfterDownload {
    /// Remove the file from the bank's server once it is safely in the spool.
    #[default]
    Delete,
    /// Move it to `archive_dir` on the server.
    Move,
    /// Leave it; it is recognised by name and hash and not processed again.
    Keep,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    #[serde(rename = "type")]
    pub kind: TransportKind,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub user: Option<String>,
    /// The client's private key (ed25519 or RSA) for SFTP authentication.
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// A file holding the SFTP password (mode 0600, or a systemd credential), for servers
    /// that require password authentication. The password itself never appears in the config.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A known_hosts file that pins the server's host key.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Pinned host key fingerprints, `SHA256:…` as ssh-keygen -lf prints them.
    #[serde(default)]
    pub host_key_fingerprints: Vec<String>,
    /// SFTP: remote folders; folder transport: local folders.
    #[serde(default)]
    pub upload_dir: Option<String>,
    #[serde(default)]
    pub download_dir: Option<String>,
    /// Remote file name: `{company}`, `{msgid}`, `{channel}`, `{date}`, `{batch}`.
    #[serde(default = "default_remote_name")]
    pub remote_name: String,
    /// Upload to `NAME.part`, then rename. Turn off for servers that pick files up at once
    /// and cannot ignore `.part` files.
    #[serde(default = "yes")]
    pub use_temp_name: bool,
    /// Which files in `download_dir` are the bank's return files (glob: `*`, `?`).
    #[serde(default = "default_patterns")]
    pub download_patterns: Vec<String>,
    #[serde(default)]
    pub after_download: AfterDownload,
    #[serde(default)]
    pub archive_dir: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Attempts for each connect, upload and download.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First retry delay; doubled each attempt, with jitter.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

fn default_port() -> u16 {
    22
}
fn default_remote_name() -> String {
    "{company}_{msgid}.pgp".into()
}
fn default_patterns() -> Vec<String> {
    vec!["*".into()]
}
fn default_timeout() -> u64 {
    30
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    500
}

fn default_name_len() -> usize {
    70
}
fn default_remittance_len() -> usize {
    140
}
fn default_domestic_digits() -> [usize; 2] {
    [8, 32]
}
fn yes() -> bool {
    true
}

/// Encoding of CSV input: detected (`auto`, among the channel's `encodings`) or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputEncoding {
    #[default]
    Auto,
    Fixed(CsvEncoding),
}

impl InputEncoding {
    /// Chinese Excel's encodings, in which results are written back.
    pub fn is_gb(self) -> bool {
        matches!(self, InputEncoding::Fixed(e) if e.0 == encoding_rs::GBK || e.0 == encoding_rs::GB18030)
    }
}

impl<'de> Deserialize<'de> for InputEncoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.eq_ignore_ascii_case("auto") {
            return Ok(InputEncoding::Auto);
        }
        CsvEncoding::from_label(&s)
            .map(InputEncoding::Fixed)
            .map_err(serde::de::Error::custom)
    }
}

/// One encoding a CSV file may be in. UTF-16 stands for both byte orders (the BOM decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvEncoding(pub &'static encoding_rs::Encoding);

impl CsvEncoding {
    pub const UTF_16: CsvEncoding = CsvEncoding(encoding_rs::UTF_16LE);

    /// A WHATWG label (`utf-8`, `utf-16`, `gb18030`, `gbk`, `windows-1252`, `iso-8859-15`,
    /// `latin1` …), case-insensitive; `utf8`/`utf16` are accepted too.
    pub fn from_label(s: &str) -> Result<CsvEncoding, String> {
        let l = s.trim().to_ascii_lowercase();
        if matches!(
            l.as_str(),
            "utf16" | "utf-16" | "utf-16le" | "utf-16be" | "unicode"
        ) {
            return Ok(CsvEncoding::UTF_16);
        }
        match encoding_rs::Encoding::for_label(l.as_bytes()) {
            Some(e) if e == encoding_rs::REPLACEMENT || e == encoding_rs::X_USER_DEFINED => {
                Err(format!("`{s}` is not an encoding a CSV file is written in"))
            }
            Some(e) => Ok(CsvEncoding(e)),
            None => Err(format!(
                "unknown encoding `{s}`: use auto, or one of utf-8, utf-16, gb18030, gbk, windows-1252, iso-8859-15 (any WHATWG label)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        if self == CsvEncoding::UTF_16 {
            "UTF-16"
        } else {
            self.0.name()
        }
    }
}

impl<'de> Deserialize<'de> for CsvEncoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CsvEncoding::from_label(&s).map_err(serde::de::Error::custom)
    }
}

/// What `encoding = "auto"` chooses among when a channel does not say: UTF-8 and UTF-16 (Excel's
/// "CSV UTF-8" and "Unicode text"), GB18030 (Chinese Excel's ANSI) and Windows-1252 (Western
/// European Excel's ANSI).
pub fn default_encodings() -> Vec<CsvEncoding> {
    vec![
        CsvEncoding(encoding_rs::UTF_8),
        CsvEncoding::UTF_16,
        CsvEncoding(encoding_rs::GB18030),
        CsvEncoding(encoding_rs::WINDOWS_1252),
    ]
}

/// How amounts written as text separate decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecimalSeparator {
    /// From the amounts themselves: the first one that can only be read one way fixes the
    /// file's convention; one that could be read both ways before that is refused.
    #[default]
    Auto,
    /// `1,234.56`
    Point,
    /// `1.234,56`
    Comma,
}

impl<'de> Deserialize<'de> for DecimalSeparator {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.trim() {
            "auto" => Ok(DecimalSeparator::Auto),
            "." => Ok(DecimalSeparator::Point),
            "," => Ok(DecimalSeparator::Comma),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not a decimal separator: use \".\" (1,234.56), \",\" (1.234,56) or \"auto\""
            ))),
        }
    }
}

/// When a file has no execution date column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultDate {
    #[default]
    NextBusinessDay,
    Today,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub kind: ChannelKind,
    pub bank: String,
    pub debtor_account: String,
    /// The channel's folder tree: `inbox/`, `rejected/`, `results/` … live under it.
    pub folder: PathBuf,
    /// Currency of rows that have no currency column.
    #[serde(default)]
    pub currency: Option<Currency>,
    #[serde(default)]
    pub encoding: InputEncoding,
    /// The encodings `auto` chooses among, for a channel whose files come from one part of the
    /// world: `["utf-8", "gb18030"]` for a Chinese payroll, `["utf-8", "windows-1252"]` for a
    /// European supplier channel.
    #[serde(default = "default_encodings")]
    pub encodings: Vec<CsvEncoding>,
    /// CSV delimiter; detected when absent (`,` `;` tab `|`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Worksheet name; the first sheet when absent.
    #[serde(default)]
    pub sheet: Option<String>,
    /// How text amounts separate decimals: `"."`, `","` or `"auto"` (from the amounts).
    #[serde(default)]
    pub decimal_separator: DecimalSeparator,
    /// Replaced by `decimal_separator = ","`; still read, and refused beside it.
    #[serde(default)]
    pub decimal_comma: Option<bool>,
    /// chrono format for dates written like `15/12/2026` (ambiguous without it).
    #[serde(default)]
    pub date_format: Option<String>,
    #[serde(default)]
    pub default_execution_date: DefaultDate,
    /// ISO 20022 category purpose; default `SALA` for payroll, `SUPP` for supplier channels.
    #[serde(default)]
    pub category_purpose: Option<String>,
    /// Language of the result reports written to `results/`: `en` or `zh`.
    #[serde(default)]
    pub report_language: crate::bank::reasons::Language,
    /// Payments without a final status this many days after sending are flagged.
    #[serde(default = "default_final_status_days")]
    pub final_status_days: u32,
    /// What an identical row (same account, amount and reference) is.
    #[serde(default)]
    pub duplicate_rows: Severity,
    /// What a name or reference starting with `=`, `+`, `-`, `@`, a tab or a carriage return
    /// is (how spreadsheet formula attacks travel): an error, or a warning for a channel whose
    /// references legitimately start with `-`.
    #[serde(default)]
    pub formula_values: Severity,
    /// Header names per field, used before the built-in aliases.
    #[serde(default)]
    pub columns: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub limits: Limits,
    /// `inotify` (default) for local folders; `poll` for network shares (SMB/NFS), which
    /// deliver no inotify events.
    #[serde(default)]
    pub watch: WatchMode,
    /// Polling: how often the inbound folder is scanned.
    #[serde(default = "default_scan_secs")]
    pub scan_secs: u64,
    /// Polling: a file is complete once its size and modification time have not changed for
    /// this long.
    #[serde(default = "default_stable_secs")]
    pub stable_secs: u64,
    /// For a channel fed by a system (every file has one owner on disk): the submitter to
    /// record instead of the file's owner.
    #[serde(default)]
    pub submitter: Option<String>,
    #[serde(default)]
    pub approval: Approval,
}

impl Channel {
    /// The decimal separator, from `decimal_separator` or the older `decimal_comma`.
    pub fn decimal_separator(&self) -> DecimalSeparator {
        match (self.decimal_separator, self.decimal_comma) {
            (DecimalSeparator::Auto, Some(true)) => DecimalSeparator::Comma,
            (DecimalSeparator::Auto, Some(false)) => DecimalSeparator::Point,
            (s, _) => s,
        }
    }
}

fn default_scan_secs() -> u64 {
    5
}
fn default_stable_secs() -> u64 {
    2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    #[default]
    Inotify,
    Poll,
}

/// Who must approve a batch before it is sent. Who *may* approve is a role
/// (`paygate users grant NAME approver --channel CH`), not config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Batches whose total (in each of their currencies) is below this are approved
    /// automatically, unless scrutiny asks for a person; one amount for every currency or
    /// per currency. Absent: every batch needs approval.
    #[serde(default)]
    pub auto_below: Option<AmountLimit>,
    /// Distinct approvers a batch needs (never its submitter).
    #[serde(default = "default_required")]
    pub required: u32,
    /// More approvers for larger batches: `[{ above = "100000", required = 2 }]`. The
    /// highest tier whose `above` the batch total passes (in any currency) applies.
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// A batch still waiting for approval after this long expires (it is never sent); hours,
    /// fractions allowed.
    #[serde(default = "default_expire_hours")]
    pub expire_hours: f64,
    #[serde(default)]
    pub scrutiny: Scrutiny,
    /// Replaced by roles; kept only to name the key in a clear error.
    #[serde(default)]
    pub approvers: Option<toml::Value>,
}

impl Default for Approval {
    fn default() -> Self {
        Approval {
            auto_below: None,
            required: default_required(),
            tiers: Vec::new(),
            expire_hours: default_expire_hours(),
            scrutiny: Scrutiny::default(),
            approvers: None,
        }
    }
}

impl Approval {
    /// How long a batch may wait for approval.
    pub fn expire_after(&self) -> chrono::Duration {
        chrono::Duration::milliseconds((self.expire_hours * 3_600_000.0).round() as i64)
    }
}

/// One approval tier: batches whose total is above `above` need `required` approvers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub above: AmountLimit,
    pub required: u32,
}

/// Extra scrutiny: each finding adds one required approval and is shown with its reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scrutiny {
    /// A payee account never paid before from this channel.
    #[serde(default = "yes")]
    pub new_beneficiary: bool,
    /// A possible duplicate batch (same count and total) or payment (same account, amount
    /// and reference) sent from this channel within this many days; 0 turns it off.
    #[serde(default = "default_duplicate_days")]
    pub duplicate_days: u32,
    /// A payment more than this many times the payee's largest earlier payment (same
    /// currency); 0 turns it off.
    #[serde(default = "default_outlier_factor")]
    pub outlier_factor: Decimal,
}

impl Default for Scrutiny {
    fn default() -> Self {
        Scrutiny {
            new_beneficiary: true,
            duplicate_days: default_duplicate_days(),
            outlier_factor: default_outlier_factor(),
        }
    }
}

fn default_duplicate_days() -> u32 {
    30
}
fn default_outlier_factor() -> Decimal {
    Decimal::from(3)
}

fn default_required() -> u32 {
    1
}
fn default_expire_hours() -> f64 {
    72.0
}

/// A per-payment limit. Amounts are written as strings: money is never a float.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AmountLimit {
    All(Decimal),
    PerCurrency(BTreeMap<Currency, Decimal>),
}

impl AmountLimit {
    pub fn for_currency(&self, c: Currency) -> Option<Decimal> {
        match self {
            AmountLimit::All(d) => Some(*d),
            AmountLimit::PerCurrency(m) => m.get(&c).copied(),
        }
    }

    fn values(&self) -> Vec<Decimal> {
        match self {
            AmountLimit::All(d) => vec![*d],
            AmountLimit::PerCurrency(m) => m.values().copied().collect(),
        }
    }

    /// `50000` (every currency) or `EUR:50000,JPY:7000000` (those currencies only).
    pub fn parse(s: &str) -> Result<AmountLimit, String> {
        let s = s.trim();
        let positive = |v: &str| -> Result<Decimal, String> {
            let d: Decimal = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not an amount"))?;
            if d <= Decimal::ZERO {
                return Err(format!("{v}: must be greater than zero"));
            }
            Ok(d)
        };
        if !s.contains(':') {
            return positive(s).map(AmountLimit::All);
        }
        let mut m = BTreeMap::new();
        for part in s.split(',') {
            let (c, v) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: write CCY:AMOUNT, e.g. EUR:50000"))?;
            let c: Currency = c
                .trim()
                .parse()
                .map_err(|_| format!("{c:?} is not an ISO 4217 currency"))?;
            m.insert(c, positive(v)?);
        }
        Ok(AmountLimit::PerCurrency(m))
    }
}

impl std::fmt::Display for AmountLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AmountLimit::All(d) => write!(f, "{d}"),
            AmountLimit::PerCurrency(m) => {
                let parts: Vec<String> = m.iter().map(|(c, d)| format!("{c}:{d}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn names(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Cap on the uncompressed size of a spreadsheet (a zip bomb is refused before reading).
    #[serde(default = "default_max_unpacked_bytes")]
    pub max_unpacked_bytes: u64,
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// Largest single payment: one amount for every currency (`"50000.00"`), or per currency
    /// (`{ EUR = "1000000.00", JPY = "150000000" }`; a currency not listed has no limit).
    #[serde(default)]
    pub max_amount: Option<AmountLimit>,
    /// Hard limit on a batch's total; a batch over it is declined, whatever the approvals.
    #[serde(default)]
    pub max_batch_total: Option<AmountLimit>,
    /// Hard limit on what the channel pays in one day (local calendar day, every batch not
    /// declined, expired or rejected); a batch that would pass it is declined.
    #[serde(default)]
    pub max_daily_total: Option<AmountLimit>,
    #[serde(default = "default_max_days_ahead")]
    pub max_days_ahead: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: default_max_file_bytes(),
            max_unpacked_bytes: default_max_unpacked_bytes(),
            max_rows: default_max_rows(),
            max_amount: None,
            max_batch_total: None,
            max_daily_total: None,
            max_days_ahead: default_max_days_ahead(),
        }
    }
}

fn default_max_file_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_unpacked_bytes() -> u64 {
    500 * 1024 * 1024
}
fn default_max_rows() -> u64 {
    1_000_000
}
fn default_max_days_ahead() -> u32 {
    90
}

/// The fields a column can be mapped to.
pub const FIELDS: &[&str] = &[
    "name",
    "account",
    "bank_code",
    "bank_name",
    "amount",
    "currency",
    "reference",
    "end_to_end_id",
    "execution_date",
    "street",
    "building_number",
    "postcode",
    "town",
    "country",
    "address_line1",
    "address_line2",
];

/// One configuration problem, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut s = format!(
        "{} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str(&format!("\n  {}: {}", p.key, p.message));
    }
    s
}

/// `AB12 CD34…` and `ab12cd34…` are the same fingerprint.
pub fn normalize_fingerprint(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

impl Config {
    /// Reads, parses and checks the config; every problem is reported, not just the first.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::parse(&text, base).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, Vec<Problem>> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            vec![Problem {
                key: "(syntax)".into(),
                message: e.to_string().trim().replace('\n', "\n    "),
            }]
        })?;
        let mut problems = Vec::new();
        let mut cfg = deserialize_collecting(table, &mut problems);
        if let Some(cfg) = cfg.as_mut() {
            cfg.base_dir = base_dir.to_path_buf();
            cfg.check(&mut problems);
        }
        match cfg {
            Some(cfg) if problems.is_empty() => Ok(cfg),
            _ => Err(problems),
        }
    }

    /// Resolves a path from the config relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let joined = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        };
        // Lexically, so that `samples/../target` reads `target` in messages.
        let mut out = PathBuf::new();
        for c in joined.components() {
            match c {
                std::path::Component::ParentDir
                    if matches!(
                        out.components().next_back(),
                        Some(std::path::Component::Normal(_))
                    ) =>
                {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                c => out.push(c),
            }
        }
        if out.as_os_str().is_empty() {
            out.push(".");
        }
        out
    }

    /// `{company}` in remote file names.
    pub fn company_short_name(&self) -> String {
        self.company.short_name.clone().unwrap_or_else(|| {
            self.company
                .name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(20)
                .collect()
        })
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.resolve(&self.paygate.templates_dir)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.paygate.data_dir)
    }

    /// The data key file of the store (`vault::key_path` over `paygate.data_key`).
    pub fn data_key_path(&self) -> PathBuf {
        crate::vault::key_path(
            self.paygate
                .data_key
                .as_ref()
                .map(|p| self.resolve(p))
                .as_deref(),
            &self.data_dir(),
        )
    }

    /// The store's URL: `[store] url`, else `paygate.database` (the key of earlier versions),
    /// else `sqlite://<data_dir>/paygate.db`.
    pub fn database_url(&self) -> String {
        self.store
            .as_ref()
            .map(|s| s.url.clone())
            .or_else(|| self.paygate.database.clone())
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir().join("paygate.db").display()))
    }

    /// How long an instance's claims outlive its last heartbeat, in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        self.store
            .as_ref()
            .map_or(default_lease_secs(), |s| s.lease_secs) as i64
            * 1000
    }

    /// The file the store's password is read from: `[store] password_file`, else the systemd
    /// credential `paygate-db-password` when there is one.
    pub fn database_password_file(&self) -> Option<PathBuf> {
        if let Some(f) = self.store.as_ref().and_then(|s| s.password_file.as_ref()) {
            return Some(self.resolve(f));
        }
        let cred =
            PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY")?).join("paygate-db-password");
        cred.is_file().then_some(cred)
    }

    /// The store's password, read from `database_password_file`: refused when the file is
    /// readable by others (a systemd credential is private to the service whatever its mode).
    pub fn database_password(&self) -> Result<Option<String>, String> {
        let Some(path) = self.database_password_file() else {
            return Ok(None);
        };
        if !crate::vault::is_credential(&path) {
            crate::vault::check_private(&path, 0o600, "it holds the store's password")
                .map_err(|e| format!("store.password_file {e}"))?;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("store.password_file {}: {e}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }

    /// The daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        match &self.paygate.control_socket {
            Some(p) => self.resolve(p),
            None => self.data_dir().join("paygate.sock"),
        }
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    /// Channels whose folder tree contains `file` (the most specific first).
    pub fn channels_for_file(&self, file: &Path) -> Vec<&str> {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let mut hits: Vec<(usize, &str)> = self
            .channels
            .iter()
            .filter_map(|(name, ch)| {
                let folder = self.resolve(&ch.folder);
                let folder = std::fs::canonicalize(&folder).unwrap_or(folder);
                file.starts_with(&folder)
                    .then(|| (folder.components().count(), name.as_str()))
            })
            .collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        hits.into_iter().map(|(_, n)| n).collect()
    }

    pub fn bank_of(&self, channel: &Channel) -> &Bank {
        // `check` guarantees that the bank exists.
        &self.banks[&channel.bank]
    }

    /// The next day, on or after `from`, that is neither a weekend nor a configured holiday.
    pub fn business_day_on_or_after(&self, from: NaiveDate) -> NaiveDate {
        let mut d = from;
        while matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
            || self.paygate.holidays.contains(&d)
        {
            d = d.succ_opt().unwrap_or(d);
        }
        d
    }

    /// The execution date a channel gives rows without one.
    pub fn default_execution_date(&self, channel: &Channel, today: NaiveDate) -> NaiveDate {
        match channel.default_execution_date {
            DefaultDate::Today => self.business_day_on_or_after(today),
            DefaultDate::NextBusinessDay => {
                self.business_day_on_or_after(today.succ_opt().unwrap_or(today))
            }
        }
    }

    fn check(&self, problems: &mut Vec<Problem>) {
        let mut p = |key: String, message: String| problems.push(Problem { key, message });
        if let Some(st) = &self.store {
            if self.paygate.database.is_some() {
                p(
                    "paygate.database".into(),
                    "the store is set in [store] url: remove paygate.database".into(),
                );
            }
            match Backend::of_url(&st.url) {
                None => p(
                    "store.url".into(),
                    format!(
                        "`{}` is not a store URL: sqlite:///PATH or postgres://USER@HOST/DB",
                        redact_url(&st.url)
                    ),
                ),
                Some(Backend::Postgres)
                    if url::Url::parse(&st.url).is_ok_and(|u| u.password().is_some()) =>
                {
                    p(
                        "store.url".into(),
                        "holds a password: put it in a file (mode 0600) or a systemd credential named by store.password_file".into(),
                    )
                }
                Some(Backend::Sqlite) if st.password_file.is_some() => p(
                    "store.password_file".into(),
                    "a SQLite store has no password".into(),
                ),
                _ => {}
            }
            if !(3..=3600).contains(&st.lease_secs) {
                p(
                    "store.lease_secs".into(),
                    format!("{} is not between 3 and 3600 seconds", st.lease_secs),
                );
            }
            if let Some(f) = &st.password_file
                && !self.resolve(f).is_file()
            {
                p(
                    "store.password_file".into(),
                    format!("{}: no such file", self.resolve(f).display()),
                );
            }
        }
        if self.company.name.trim().is_empty() {
            p("company.name".into(), "must not be empty".into());
        }
        if !crate::model::is_country(&self.company.country) {
            p(
                "company.country".into(),
                format!(
                    "`{}` is not an ISO 3166 two-letter country code (e.g. CN, DE)",
                    self.company.country
                ),
            );
        }
        if let Some(c) = self
            .company
            .address
            .as_ref()
            .and_then(|a| a.country.as_ref())
            && !crate::model::is_country(c)
        {
            p(
                "company.address.country".into(),
                format!("`{c}` is not an ISO 3166 two-letter country code"),
            );
        }
        if self.company.accounts.is_empty() {
            p(
                "company.accounts".into(),
                "define at least one debtor account, e.g. [company.accounts.payroll-cny]".into(),
            );
        }
        for (name, acct) in &self.company.accounts {
            let key = format!("company.accounts.{name}");
            if let Some(m) = acct.max_daily_total
                && m <= Decimal::ZERO
            {
                p(
                    format!("{key}.max_daily_total"),
                    "must be greater than zero".into(),
                );
            }
            if let Err(m) = acct.account() {
                p(key.clone(), m);
            }
            if let Some(bic) = &acct.bic
                && let Err(e) = Bic::parse(bic)
            {
                p(format!("{key}.bic"), format!("`{bic}`: {e}"));
            }
            if let Some(c) = &acct.cnaps
                && let Err(e) = Cnaps::parse(c)
            {
                p(format!("{key}.cnaps"), format!("`{c}`: {e}"));
            }
        }
        for (key, v, lo, hi) in [
            (
                "alerts.repeat_after_mins",
                self.alerts.repeat_after_mins,
                1,
                10_080,
            ),
            (
                "alerts.bank_unreachable_mins",
                self.alerts.bank_unreachable_mins,
                0,
                10_080,
            ),
            (
                "alerts.status_deadline_hours",
                self.alerts.status_deadline_hours,
                0,
                8_760,
            ),
            (
                "alerts.key_expiry_days",
                self.alerts.key_expiry_days,
                1,
                36_500,
            ),
            (
                "alerts.refusals_per_hour",
                self.alerts.refusals_per_hour,
                1,
                1_000_000,
            ),
            ("alerts.check_secs", self.alerts.check_secs, 1, 86_400),
            (
                "alerts.disk_free_min_mb",
                self.alerts.disk_free_min_mb,
                0,
                1 << 40,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                p(
                    key.into(),
                    format!("{v} is out of range: give {lo} to {hi}"),
                );
            }
        }
        for (i, w) in self.alerts.webhooks.iter().enumerate() {
            let key = format!("alerts.webhooks[{i}].url");
            match w.url.split_once("://") {
                Some(("https", rest)) if !rest.is_empty() => {}
                Some(("http", rest)) if is_loopback_host(rest) => {}
                Some(("http", _)) => p(
                    key,
                    format!(
                        "`{}`: plain http only to a loopback address; use https",
                        w.url
                    ),
                ),
                _ => p(key, format!("`{}` is not an https:// URL", w.url)),
            }
        }
        if let Some(e) = &self.alerts.email {
            if e.tls == SmtpTls::None && !is_loopback_host(&e.host) {
                p(
                    "alerts.email.tls".into(),
                    format!(
                        "\"none\" sends alerts in the clear: only to a relay on this machine, not `{}`; use \"starttls\"",
                        e.host
                    ),
                );
            }
            if !e.from.contains('@') {
                p(
                    "alerts.email.from".into(),
                    format!("`{}` is not an email address", e.from),
                );
            }
            for (i, t) in e.to.iter().enumerate() {
                if !t.contains('@') {
                    p(
                        format!("alerts.email.to[{i}]"),
                        format!("`{t}` is not an email address"),
                    );
                }
            }
            if e.to.is_empty() && e.addresses.is_empty() {
                p(
                    "alerts.email.to".into(),
                    "name who receives the alerts (and/or alerts.email.addresses for users)".into(),
                );
            }
            if let Some(f) = &e.password_file
                && !self.resolve(f).is_file()
            {
                p(
                    "alerts.email.password_file".into(),
                    format!("{}: no such file", self.resolve(f).display()),
                );
            }
        }
        if let Some(m) = &self.metrics {
            match m.listen.parse::<std::net::SocketAddr>() {
                Err(_) => p(
                    "metrics.listen".into(),
                    format!("`{}` is not an address:port, e.g. 127.0.0.1:9464", m.listen),
                ),
                Ok(a) if !a.ip().is_loopback() && !m.allow_remote => p(
                    "metrics.listen".into(),
                    format!(
                        "`{}` is not a loopback address: the metrics name channels and banks; set metrics.allow_remote = true to serve it anyway",
                        m.listen
                    ),
                ),
                Ok(_) => {}
            }
        }
        if self.banks.is_empty() {
            p(
                "banks".into(),
                "define at least one bank, e.g. [banks.mybank]".into(),
            );
        }
        for (name, bank) in &self.banks {
            let key = format!("banks.{name}");
            if let Some(bic) = &bank.bic
                && let Err(e) = Bic::parse(bic)
            {
                p(format!("{key}.bic"), format!("`{bic}`: {e}"));
            }
            if bank.currencies.is_empty() {
                p(
                    format!("{key}.currencies"),
                    "list the currencies this bank pays, e.g. [\"EUR\"]".into(),
                );
            }
            let [lo, hi] = bank.domestic_account_digits;
            if lo == 0 || lo > hi || hi > 34 {
                p(
                    format!("{key}.domestic_account_digits"),
                    format!(
                        "[{lo}, {hi}] is not a range: write [min, max] with 1 <= min <= max <= 34"
                    ),
                );
            }
            if let Some(cb) = &bank.charge_bearer
                && !["SLEV", "SHAR", "DEBT", "CRED"].contains(&cb.as_str())
            {
                p(
                    format!("{key}.charge_bearer"),
                    format!(
                        "`{cb}` is not an ISO 20022 charge bearer: use SLEV, SHAR, DEBT or CRED"
                    ),
                );
            }
            if let Some(pgp) = &bank.pgp {
                if pgp.keys.is_empty() {
                    p(
                        format!("{key}.pgp.keys"),
                        "name at least one key file of the bank".into(),
                    );
                }
                if pgp.keys.len() != pgp.fingerprints.len() {
                    p(
                        format!("{key}.pgp.fingerprints"),
                        format!(
                            "{} key files but {} fingerprints: pin every key file, in the same order",
                            pgp.keys.len(),
                            pgp.fingerprints.len()
                        ),
                    );
                }
                for (i, f) in pgp.fingerprints.iter().enumerate() {
                    let n = normalize_fingerprint(f);
                    if !(n.len() == 40 || n.len() == 64)
                        || !n.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        p(
                            format!("{key}.pgp.fingerprints[{i}]"),
                            format!(
                                "`{f}` is not an OpenPGP fingerprint (40 or 64 hex digits; `paygate keys show FILE` prints it)"
                            ),
                        );
                    }
                }
                if self.company.pgp.is_none() {
                    p(
                        "company.pgp".into(),
                        format!(
                            "bank `{name}` exchanges OpenPGP files: set company.pgp.secret_key and company.pgp.fingerprint (`paygate keys generate` makes a key)"
                        ),
                    );
                }
            }
            if let Some(t) = &bank.transport {
                let tk = format!("{key}.transport");
                match t.kind {
                    TransportKind::Sftp => {
                        if t.identity.is_none() && t.password_file.is_none() {
                            p(
                                format!("{tk}.identity"),
                                "required for an sftp transport (or password_file, for servers that require a password)".into(),
                            );
                        }
                        for (k, missing) in [
                            ("host", t.host.is_none()),
                            ("user", t.user.is_none()),
                            ("upload_dir", t.upload_dir.is_none()),
                            ("download_dir", t.download_dir.is_none()),
                        ] {
                            if missing {
                                p(format!("{tk}.{k}"), "required for an sftp transport".into());
                            }
                        }
                        if t.known_hosts.is_none() && t.host_key_fingerprints.is_empty() {
                            p(
                                format!("{tk}.known_hosts"),
                                "pin the server's host key: set known_hosts or host_key_fingerprints (`paygate check` shows the server's key)".into(),
                            );
                        }
                    }
                    TransportKind::Folder => {
                        for (k, missing) in [
                            ("upload_dir", t.upload_dir.is_none()),
                            ("download_dir", t.download_dir.is_none()),
                        ] {
                            if missing {
                                p(
                                    format!("{tk}.{k}"),
                                    "required for a folder transport (a local path)".into(),
                                );
                            }
                        }
                    }
                }
                if t.after_download == AfterDownload::Move && t.archive_dir.is_none() {
                    p(
                        format!("{tk}.archive_dir"),
                        "after_download = \"move\" needs archive_dir".into(),
                    );
                }
                if t.attempts == 0 || t.timeout_secs == 0 {
                    p(
                        tk.clone(),
                        "attempts and timeout_secs must be at least 1".into(),
                    );
                }
                if !t.remote_name.contains("{msgid}") {
                    p(
                        format!("{tk}.remote_name"),
                        "must contain {msgid}: the remote name must depend only on the batch, so that a resend finds the file it may already have sent".into(),
                    );
                }
            }
            if let Some(sl) = &bank.service_level
                && !(1..=4).contains(&sl.len())
            {
                p(
                    format!("{key}.service_level"),
                    format!(
                        "`{sl}` is not an ISO 20022 service level code (1 to 4 characters, e.g. SEPA, URGP)"
                    ),
                );
            }
            match (bank.encryption, &bank.pgp) {
                (Encryption::None, Some(_)) => p(
                    format!("{key}.encryption"),
                    "is \"none\" but [banks.NAME.pgp] is set: remove one of them".replace("NAME", name),
                ),
                (Encryption::Openpgp, None) if bank.transport.is_some() => p(
                    format!("{key}.pgp"),
                    "the bank has a transport but no OpenPGP keys: set [banks.NAME.pgp], or encryption = \"none\" if the bank's SFTP channel is its only protection".replace("NAME", name),
                ),
                _ => {}
            }
            if bank.poll_secs == 0 {
                p(format!("{key}.poll_secs"), "must be at least 1".into());
            }
            for (k, v) in [
                ("max_name_length", bank.max_name_length),
                ("max_remittance_length", bank.max_remittance_length),
            ] {
                if v == 0 {
                    p(format!("{key}.{k}"), "must be at least 1".into());
                }
            }
        }
        if self.channels.is_empty() {
            p(
                "channels".into(),
                "define at least one channel, e.g. [channels.payroll]".into(),
            );
        }
        for (name, ch) in &self.channels {
            let key = format!("channels.{name}");
            if ch.decimal_comma.is_some() && ch.decimal_separator != DecimalSeparator::Auto {
                p(
                    format!("{key}.decimal_comma"),
                    "is replaced by decimal_separator, which is set too: remove decimal_comma"
                        .into(),
                );
            }
            if ch.encodings.is_empty() {
                p(
                    format!("{key}.encodings"),
                    "is empty: list the encodings files may be in, e.g. [\"utf-8\", \"gb18030\"]"
                        .into(),
                );
            }
            let bank = self.banks.get(&ch.bank);
            if bank.is_none() {
                p(
                    format!("{key}.bank"),
                    format!(
                        "no bank `{}` is defined; known banks: {}",
                        ch.bank,
                        self.banks.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            match self.company.accounts.get(&ch.debtor_account) {
                None => p(
                    format!("{key}.debtor_account"),
                    format!(
                        "no account `{}` under [company.accounts]; known accounts: {}",
                        ch.debtor_account,
                        self.company
                            .accounts
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some(acct) => {
                    if let Some(b) = bank
                        && !b.currencies.contains(&acct.currency)
                    {
                        p(
                            format!("{key}.debtor_account"),
                            format!(
                                "account `{}` is in {}, which bank `{}` does not list in its currencies",
                                ch.debtor_account, acct.currency, ch.bank
                            ),
                        );
                    }
                }
            }
            if let (Some(c), Some(b)) = (ch.currency, bank)
                && !b.currencies.contains(&c)
            {
                p(
                    format!("{key}.currency"),
                    format!("{c} is not among bank `{}`'s currencies", ch.bank),
                );
            }
            if let Some(d) = ch.delimiter
                && !matches!(d, ',' | ';' | '\t' | '|')
            {
                p(
                    format!("{key}.delimiter"),
                    format!("{d:?} is not supported: use \",\", \";\", \"\\t\" or \"|\""),
                );
            }
            if let Some(f) = &ch.date_format {
                let probe = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default();
                if !crate::model::date_format_ok(f, false) {
                    p(
                        format!("{key}.date_format"),
                        format!(
                            "`{f}` is not a date format (chrono's strftime: %d %m %Y …); use e.g. \"%d/%m/%Y\""
                        ),
                    );
                } else if NaiveDate::parse_from_str(&probe.format(f).to_string(), f) != Ok(probe) {
                    p(
                        format!("{key}.date_format"),
                        format!("`{f}` cannot read back a date it writes; use e.g. \"%d/%m/%Y\""),
                    );
                }
            }
            for field in ch.columns.keys() {
                if !FIELDS.contains(&field.as_str()) {
                    p(
                        format!("{key}.columns.{field}"),
                        format!("unknown field; the fields are: {}", FIELDS.join(", ")),
                    );
                }
            }
            if let Some(cp) = &ch.category_purpose
                && !(cp.len() == 4 && cp.bytes().all(|b| b.is_ascii_uppercase()))
            {
                p(
                    format!("{key}.category_purpose"),
                    format!(
                        "`{cp}` is not an ISO 20022 category purpose code (four capital letters, e.g. SALA, SUPP)"
                    ),
                );
            }
            if ch.limits.max_rows == 0 || ch.limits.max_file_bytes == 0 {
                p(
                    format!("{key}.limits"),
                    "max_rows and max_file_bytes must be at least 1".into(),
                );
            }
            if let Some(m) = &ch.limits.max_amount
                && m.values().iter().any(|v| *v <= Decimal::ZERO)
            {
                p(
                    format!("{key}.limits.max_amount"),
                    "must be greater than zero".into(),
                );
            }
            let a = &ch.approval;
            if !(1..=5).contains(&a.required) {
                p(
                    format!("{key}.approval.required"),
                    format!("{} approvers: give 1 to 5", a.required),
                );
            }
            if let Some(m) = &a.auto_below
                && m.values().iter().any(|v| *v < Decimal::ZERO)
            {
                p(
                    format!("{key}.approval.auto_below"),
                    "must not be negative".into(),
                );
            }
            if a.approvers.is_some() {
                p(
                    format!("{key}.approval.approvers"),
                    format!(
                        "approvers are roles now, not config: remove this key and grant them with `paygate users grant NAME approver --channel {name}`"
                    ),
                );
            }
            let mut last = a.required;
            for (i, t) in a.tiers.iter().enumerate() {
                let tk = format!("{key}.approval.tiers[{i}]");
                if !(1..=5).contains(&t.required) {
                    p(
                        format!("{tk}.required"),
                        format!("{} approvers: give 1 to 5", t.required),
                    );
                }
                if t.above.values().iter().any(|v| *v < Decimal::ZERO) {
                    p(format!("{tk}.above"), "must not be negative".into());
                }
                if t.required <= last {
                    p(
                        format!("{tk}.required"),
                        format!(
                            "{} approvers is not more than the tier below ({last}): each tier must ask for more",
                            t.required
                        ),
                    );
                }
                last = last.max(t.required);
            }
            if !(a.expire_hours.is_finite() && a.expire_hours > 0.0 && a.expire_hours <= 8760.0) {
                p(
                    format!("{key}.approval.expire_hours"),
                    format!(
                        "{}: give a positive number of hours, at most a year (8760)",
                        a.expire_hours
                    ),
                );
            }
            let f = a.scrutiny.outlier_factor;
            if f != Decimal::ZERO && (f <= Decimal::ONE || f > Decimal::from(1000)) {
                p(
                    format!("{key}.approval.scrutiny.outlier_factor"),
                    format!(
                        "{f}: must be more than 1 (e.g. 3 for three times the payee's largest payment), or 0 for no check"
                    ),
                );
            }
            for (what, l) in [
                ("max_batch_total", &ch.limits.max_batch_total),
                ("max_daily_total", &ch.limits.max_daily_total),
            ] {
                if let Some(m) = l
                    && m.values().iter().any(|v| *v <= Decimal::ZERO)
                {
                    p(
                        format!("{key}.limits.{what}"),
                        "must be greater than zero".into(),
                    );
                }
            }
            if ch.scan_secs == 0 {
                p(format!("{key}.scan_secs"), "must be at least 1".into());
            }
            if let Some(s) = &ch.submitter
                && s.trim().is_empty()
            {
                p(format!("{key}.submitter"), "must not be empty".into());
            }
        }
        if self.paygate.workers == 0 {
            p("paygate.workers".into(), "must be at least 1".into());
        }
        if let Some(a) = &self.paygate.admin
            && (a.trim().is_empty() || a.contains(char::is_whitespace))
        {
            p(
                "paygate.admin".into(),
                format!("{a:?}: give the OS user name of the bootstrap admin"),
            );
        }
        // Two channels sharing a folder would take each other's files.
        let mut folders: BTreeMap<PathBuf, &str> = BTreeMap::new();
        for (name, ch) in &self.channels {
            let f = self.resolve(&ch.folder);
            if let Some(other) = folders.insert(f.clone(), name) {
                p(
                    format!("channels.{name}.folder"),
                    format!(
                        "{} is also channel `{other}`'s folder: give each channel its own",
                        f.display()
                    ),
                );
            }
        }
    }
}

impl Channel {
    pub fn category_purpose(&self) -> &str {
        match (&self.category_purpose, self.kind) {
            (Some(c), _) => c,
            (None, ChannelKind::Payroll) => "SALA",
            (None, ChannelKind::Supplier) => "SUPP",
        }
    }
}

impl DebtorAccountCfg {
    /// The account and its bank, or what is wrong with them.
    pub fn account(&self) -> Result<(Account, Option<BankId>), String> {
        let account = match (&self.iban, &self.number) {
            (Some(i), None) => {
                Account::Iban(Iban::parse(i).map_err(|e| format!("iban `{i}`: {e}"))?)
            }
            (None, Some(n)) => Account::Domestic(
                DomesticAccount::parse(n, 1, 34).map_err(|e| format!("number `{n}`: {e}"))?,
            ),
            (Some(_), Some(_)) => return Err("give either `iban` or `number`, not both".into()),
            (None, None) => {
                return Err("give the account as `iban = \"…\"` or `number = \"…\"`".into());
            }
        };
        let bank = match (&self.bic, &self.cnaps) {
            (Some(b), _) => Bic::parse(b).ok().map(BankId::Bic),
            (None, Some(c)) => Cnaps::parse(c).ok().map(BankId::Cnaps),
            (None, None) => None,
        };
        Ok((account, bank))
    }
}

/// Whether `host` (`host`, `host:port`, `host/path`, `[::1]:port`) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.split('/').next().unwrap_or("");
    let h = match h.strip_prefix('[') {
        Some(r) => r.split(']').next().unwrap_or(""),
        None => h.rsplit_once(':').map_or(h, |(a, _)| a),
    };
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Deserializes section by section, so that a mistake in one channel does not hide a mistake in
/// another; within a section, a faulty key is noted, removed, and the section tried again.
fn deserialize_collecting(mut table: toml::Table, problems: &mut Vec<Problem>) -> Option<Config> {
    for (section, maps) in [
        ("paygate", false),
        ("company", false),
        ("banks", true),
        ("channels", true),
    ] {
        match table.get_mut(section) {
            None => problems.push(Problem {
                key: format!("[{section}]"),
                message: "this section is missing".into(),
            }),
            Some(toml::Value::Table(t)) if maps => {
                for (name, v) in t.iter_mut() {
                    match section {
                        "banks" => drain_errors::<Bank>(&format!("{section}.{name}"), v, problems),
                        _ => drain_errors::<Channel>(&format!("{section}.{name}"), v, problems),
                    }
                }
            }
            Some(v) if maps => problems.push(Problem {
                key: section.into(),
                message: format!("must be a table of named entries, found a {}", v.type_str()),
            }),
            Some(v) => match section {
                "paygate" => drain_errors::<General>(section, v, problems),
                _ => drain_errors::<Company>(section, v, problems),
            },
        }
    }
    for (section, v) in table.iter_mut() {
        match section.as_str() {
            "archive" => drain_errors::<ArchiveCfg>(section, v, problems),
            "alerts" => drain_errors::<Alerts>(section, v, problems),
            "metrics" => drain_errors::<MetricsCfg>(section, v, problems),
            "store" => drain_errors::<StoreCfg>(section, v, problems),
            _ => {}
        }
    }
    for key in table.keys() {
        if ![
            "paygate", "company", "banks", "channels", "archive", "alerts", "metrics", "store",
        ]
        .contains(&key.as_str())
        {
            problems.push(Problem {
                key: key.clone(),
                message: "unknown section; the sections are [paygate], [company], [banks.NAME], [channels.NAME], [archive], [alerts], [metrics] and [store]".into(),
            });
        }
    }
    if !problems.is_empty() {
        return None;
    }
    match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(table)) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(Problem {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            });
            None
        }
    }
}

fn drain_errors<T: serde::de::DeserializeOwned>(
    prefix: &str,
    value: &mut toml::Value,
    problems: &mut Vec<Problem>,
) {
    for _ in 0..64 {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(_) => return,
            Err(e) => e,
        };
        // toml appends "in `key`" lines; the key is already named.
        let msg = err
            .inner()
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        // Table keys only: an error inside an array removes the whole array on retry.
        let mut key_segments: Vec<String> = Vec::new();
        let mut display = prefix.to_string();
        for seg in err.path().iter() {
            match seg {
                serde_path_to_error::Segment::Map { key } => {
                    key_segments.push(key.clone());
                    display.push('.');
                    display.push_str(key);
                }
                serde_path_to_error::Segment::Seq { index } => {
                    display.push_str(&format!("[{index}]"))
                }
                _ => {}
            }
        }
        if let Some(u) = msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            && key_segments.last().map(String::as_str) != Some(u)
        {
            key_segments.push(u.to_string());
            display.push('.');
            display.push_str(u);
        }
        let key = display;
        problems.push(Problem {
            key,
            message: friendly(&msg),
        });
        if !remove_path(value, &key_segments) {
            return;
        }
    }
}

fn friendly(msg: &str) -> String {
    if msg.starts_with("unknown field") {
        format!("{msg} (remove it or fix its spelling)")
    } else if msg.starts_with("missing field") {
        format!("{msg}: add it")
    } else {
        msg.to_string()
    }
}

fn remove_path(value: &mut toml::Value, segs: &[String]) -> bool {
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = value;
    for s in parents {
        cur = match cur {
            toml::Value::Table(t) => match t.get_mut(s) {
                Some(v) => v,
                None => return false,
            },
            toml::Value::Array(a) => match s.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        toml::Value::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[paygate]
data_dir = "data"

[company]
name = "Acme"
country = "CN"
[company.accounts.main]
number = "31001234567890"
cnaps = "102290002916"
currency = "CNY"

[banks.icbc]
name = "ICBC"
currencies = ["CNY"]
charset = "utf8"

[channels.payroll]
kind = "payroll"
bank = "icbc"
debtor_account = "main"
folder = "payroll"
"#;

    #[test]
    fn good_config_loads_with_defaults() {
        let cfg = Config::parse(GOOD, Path::new("/etc/paygate")).unwrap();
        let ch = cfg.channel("payroll").unwrap();
        assert_eq!(ch.limits.max_days_ahead, 90);
        assert_eq!(cfg.bank_of(ch).max_name_length, 70);
        assert_eq!(cfg.data_dir(), PathBuf::from("/etc/paygate/data"));
        assert_eq!(cfg.database_url(), "sqlite:///etc/paygate/data/paygate.db");
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let bad = GOOD
            .replace(
                "currencies = [\"CNY\"]",
                "currencies = [\"CNY\", \"XYZ\"]\ncolour = \"red\"",
            )
            .replace(
                "bank = \"icbc\"",
                "bank = \"boc\"\nencoding = \"ebcdic-37\"",
            )
            .replace("country = \"CN\"", "country = \"China\"");
        let problems = Config::parse(&bad, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"banks.icbc.currencies[1]"), "{problems:#?}");
        assert!(keys.contains(&"banks.icbc.colour"), "{problems:#?}");
        assert!(keys.contains(&"channels.payroll.encoding"), "{problems:#?}");
        let enc = problems
            .iter()
            .find(|p| p.key == "channels.payroll.encoding")
            .unwrap();
        assert!(
            enc.message.contains("unknown encoding `ebcdic-37`"),
            "{enc:?}"
        );
        // Western European encodings by any WHATWG label; a channel narrows what `auto` picks.
        let western = GOOD.replace(
            "bank = \"icbc\"",
            "bank = \"icbc\"\nencodings = [\"utf-8\", \"latin1\"]\ndecimal_separator = \",\"",
        );
        let cfg = Config::parse(&western, Path::new(".")).unwrap();
        let ch = &cfg.channels["payroll"];
        assert_eq!(
            ch.encodings,
            vec![
                CsvEncoding(encoding_rs::UTF_8),
                CsvEncoding(encoding_rs::WINDOWS_1252)
            ]
        );
        assert_eq!(ch.decimal_separator(), DecimalSeparator::Comma);
        let both = western.replace("bank = \"icbc\"", "bank = \"icbc\"\ndecimal_comma = true");
        let problems = Config::parse(&both, Path::new(".")).unwrap_err();
        assert_eq!(
            problems[0].key, "channels.payroll.decimal_comma",
            "{problems:#?}"
        );
        // Semantic checks need a complete structure; those come once the structure is right.
        let semantic = GOOD
            .replace("bank = \"icbc\"", "bank = \"boc\"")
            .replace("country = \"CN\"", "country = \"China\"");
        let problems = Config::parse(&semantic, Path::new(".")).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["company.country", "channels.payroll.bank"],
            "{problems:#?}"
        );
        assert!(problems[1].message.contains("known banks: icbc"));
    }

    #[test]
    fn missing_section_and_field_are_named() {
        let problems = Config::parse("[paygate]\n", Path::new(".")).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"paygate"), "{problems:#?}");
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("missing field `data_dir`"))
        );
        assert!(keys.contains(&"[company]"));
        assert!(keys.contains(&"[channels]"));
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let problems = Config::parse("[paygate\n", Path::new(".")).unwrap_err();
        assert_eq!(problems[0].key, "(syntax)");
        assert!(
            problems[0].message.contains("line 1"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let text = GOOD.replace(
            "data_dir = \"data\"",
            "data_dir = \"data\"\nholidays = [2026-12-07]",
        );
        let cfg = Config::parse(&text, Path::new(".")).unwrap();
        let ch = cfg.channel("payroll").unwrap();
        let fri = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        // Saturday, Sunday and the Monday holiday are skipped.
        assert_eq!(
            cfg.default_execution_date(ch, fri),
            NaiveDate::from_ymd_opt(2026, 12, 8).unwrap()
        );
    }
}
