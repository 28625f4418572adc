//! paygate: a bank host-to-host payment gateway. Payroll and supplier files come in through
//! watched folders; validated, approved batches go to the bank in its format; the bank's status
//! reports come back and are reconciled onto every payment.
//!
//! The modules mirror the pipeline; see ARCHITECTURE.md for the data flow and the invariants.

pub mod alerts;
pub mod approval;
pub mod archive;
pub mod bank;
pub mod banksim;
pub mod cli;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod delivery;
pub mod durable;
pub mod finding;
pub mod inbound;
pub mod intake;
pub mod model;
pub mod reconcile;
pub mod render;
pub mod results;
pub mod seal;
pub mod store;
pub mod transport;
pub mod validate;
pub mod vault;
