//! Command line: clap definitions and dispatch. The only place where `anyhow` is used; every
//! command returns an exit code from `Exit`.

mod access;
mod check_config;
mod convert;
mod daemon;
mod demo;
mod export;
mod formats;
mod keys;
mod pgp;
mod returns;
mod sim;
mod store;
mod validate;
mod wire;

use crate::config::{Config, ConfigError};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit codes shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The input has errors.
    InputErrors = 1,
    /// Usage or I/O error: the input could not be read at all.
    Usage = 2,
    /// Configuration error (EX_CONFIG).
    Config = 78,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Parser, Debug)]
#[command(name = "paygate", version, about = "Bank host-to-host payment gateway", long_about = None)]
pub struct Cli {
    /// Config file [default: $PAYGATE_CONFIG, else /etc/paygate/paygate.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read and validate a payment file with a channel's settings (a dry run: nothing is stored)
    Validate(validate::Args),
    /// Validate and convert a payment file to the bank's format (a dry run: nothing is sent)
    Convert(convert::Args),
    /// List the output formats: pain.001 versions and bank layout templates
    Formats(formats::Args),
    /// Check the config file and print every problem, each with its key
    CheckConfig(check_config::Args),
    /// Check config, keys (and their expiry), connections, host keys and remote folders
    Check(wire::CheckArgs),
    /// The company's OpenPGP key
    #[command(subcommand)]
    Keys(keys::Command),
    /// Sign and encrypt a file for a bank exactly as the daemon would
    Seal(pgp::Args),
    /// Decrypt a file from a bank and verify the bank's signature
    Open(pgp::Args),
    /// Upload one sealed file to a bank (e.g. a manual resend)
    Send(wire::SendArgs),
    /// Pull the bank's waiting return files once into the spool, open them, and list them
    Fetch(wire::FetchArgs),
    /// Show what a bank return file says, without touching the store
    Inspect(returns::InspectArgs),
    /// Import a bank return file by hand and reconcile it with its batch
    Reconcile(returns::ReconcileArgs),
    /// List batches with their payments' statuses, and reports that match no batch
    Batches(returns::BatchesArgs),
    /// One batch
    #[command(subcommand)]
    Batch(returns::BatchCommand),
    /// Run the daemon: watch the channels' folders, approve, seal, send, fetch and reconcile
    Run(daemon::RunArgs),
    /// Approve a batch waiting for approval (as the OS user running this command)
    Approve(daemon::ApproveArgs),
    /// Decline a batch waiting for approval: it is never sent
    Reject(daemon::RejectArgs),
    /// Let a file refused as a duplicate be processed once more (admins; audited)
    Readmit(daemon::ReadmitArgs),
    /// What the running daemon is doing: channels, batches, pending approvals, banks
    Status(daemon::StatusArgs),
    /// Reload the running daemon's config (as SIGHUP does)
    Reload,
    /// Alerts: acknowledge one (audited); `paygate status` lists the open ones
    #[command(subcommand)]
    Alerts(daemon::AlertsCommand),
    /// Users and their roles: list, add, grant, revoke, disable, enable, review
    #[command(subcommand)]
    Users(access::UsersCommand),
    /// The audit trail: read it (filtered), verify its chain, export it with the hashes
    Audit(access::AuditArgs),
    /// Play the bank's side of a transport (joint testing, demos): answers pain.002 and camt.054
    BankSim(sim::Args),
    /// Give an auditor the decrypted originals of one batch (audited)
    Export(export::Args),
    /// The daemon and a simulated bank end to end, on embedded defaults, with no setup
    Demo(demo::Args),
    /// The store: move it from SQLite into PostgreSQL (`migrate-to`)
    #[command(subcommand)]
    Store(store::Command),
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    match &cli.command {
        Command::Run(a) => init_tracing("info", a.log_format == daemon::LogFormat::Json),
        Command::Demo(_) => init_tracing("error", false),
        _ => init_tracing("warn", false),
    }
    let config_path = cli.config.clone().unwrap_or_else(default_config_path);
    let exit = match cli.command {
        Command::Validate(a) => validate::run(a, &config_path),
        Command::Export(a) => export::run(a, &config_path),
        Command::Convert(a) => convert::run(a, &config_path),
        Command::Formats(a) => formats::run(a, &config_path),
        Command::CheckConfig(a) => check_config::run(a, &config_path),
        Command::Check(a) => wire::check(a, &config_path),
        Command::Keys(c) => keys::run(c, &config_path),
        Command::Seal(a) => pgp::seal(a, &config_path),
        Command::Open(a) => pgp::open(a, &config_path),
        Command::Send(a) => wire::send(a, &config_path),
        Command::Fetch(a) => wire::fetch(a, &config_path),
        Command::Inspect(a) => returns::inspect(a, &config_path),
        Command::Reconcile(a) => returns::reconcile(a, &config_path),
        Command::Batches(a) => returns::batches(a, &config_path),
        Command::Batch(c) => returns::batch(c, &config_path),
        Command::Run(a) => daemon::run(a, &config_path),
        Command::Approve(a) => daemon::approve(a, &config_path),
        Command::Reject(a) => daemon::reject(a, &config_path),
        Command::Readmit(a) => daemon::readmit(a, &config_path),
        Command::Status(a) => daemon::status(a, &config_path),
        Command::Reload => daemon::reload(&config_path),
        Command::Alerts(c) => daemon::alerts(c, &config_path),
        Command::Users(c) => access::users(c, &config_path),
        Command::Audit(a) => access::audit(a, &config_path),
        Command::BankSim(a) => sim::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Store(c) => store::run(c, &config_path),
    };
    exit.into()
}

fn default_config_path() -> PathBuf {
    std::env::var_os("PAYGATE_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH))
}

fn init_tracing(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        fmt.json().with_current_span(false).try_init()
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

/// The runtime of a verb that talks to the store and nothing else.
fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Prints a verb's error and gives the exit code for it.
fn usage_error(e: &dyn std::fmt::Display) -> Exit {
    eprintln!("paygate: {e}");
    Exit::Usage
}

/// Loads the config, printing its problems; `Err` carries the exit code to use.
fn load_config(path: &Path) -> Result<Config, Exit> {
    Config::load(path).map_err(|e| {
        eprintln!("paygate: {e}");
        if let ConfigError::Read { .. } = e {
            eprintln!("  (give the config with --config PATH or $PAYGATE_CONFIG; samples/paygate.toml is a complete example)");
        }
        Exit::Config
    })
}
