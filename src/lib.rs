//! `vault`: an encrypted backup vault with key management for BMC configuration backups.
//!
//! Layering, lowest first; a module uses only modules of lower layers (and
//! `tests/layering.rs` fails when one does not):
//!
//! 0. primitives: `errors` (exit-code kinds), `secret`, `clock`, `account`, `scope`,
//!    `hardening`, `escape` (control/bidi escaping of untrusted text), `retention`
//!    (which archives a policy keeps), `group` (group commit of serialised steps)
//! 1. `aead`, `fsutil` (atomic files, the temporary-file registry), `kdf` (bounded Argon2id)
//! 2. formats and the home: `envelope` (archive format), `home` (directory, lock, root
//!    key and its protection: file, passphrase, PKCS#11 token), `audit` (the hash-chained
//!    log, intents, syslog forwarding), `bmc` (Redfish client and simulator), `metrics`
//!    (Prometheus textfile)
//! 3. `keystore` (backup keys, key files), `config` (the home's `config.toml`)
//! 4. `store` (the archives of a home: stage, commit, list, find), `remote` (archive
//!    stores on S3), `signing` (the home's Ed25519 key and public-key files)
//! 5. `sweep` (keyless integrity and policy sweeps over archive files)
//! 6. `ops`: every command as a library function with typed options, results and
//!    errors; audits itself; no clap, stdout, environment or TTY; library error
//!    messages state facts and name no command or flag
//! 7. `cli`: resolves arguments, calls one operation, prints one typed record, adds
//!    the command-line hint to an error (`cli::hints`); the only module that touches
//!    stdout, stderr, environment variables and the terminal
//!
//! `fuzzing` (only with the `fuzzing` feature: fixed public keys and a password, never
//! in a shipped build) holds the fuzz targets' entry points above everything.
#![forbid(unsafe_code)]

pub mod account;
pub mod aead;
pub mod audit;
pub mod bmc;
pub mod cli;
pub mod clock;
pub mod config;
pub mod envelope;
pub mod errors;
pub mod escape;
pub mod fsutil;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod hardening;
pub mod home;
pub mod kdf;
pub mod keystore;
pub mod metrics;
pub mod ops;
pub mod remote;
pub mod retention;
pub mod scope;
pub mod secret;
pub mod signing;
pub mod store;
pub mod sweep;
