//! `vault home …`: how the root key of a vault home is protected.
//!
//! Where secrets come from (never argv): the root passphrase from `--root-password-file`,
//! `VAULT_ROOT_PASSWORD` or the terminal; a new passphrase from `--new-password-file`,
//! `VAULT_NEW_ROOT_PASSWORD` or the terminal (asked twice); a token's PIN from the PIN file
//! configured in the home (`--pkcs11-pin-file`), `VAULT_PKCS11_PIN` or the terminal.
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::password::PasswordArg;
use super::{CliResult, Ctx};
use crate::home::root::{self, RootError, Unlocker};
use crate::home::token::{TokenConfig, TokenError};
use crate::keystore::{RootChange, RootInfo};
use crate::ops::home::{self, Protection};
use crate::secret::Password;

pub const ENV_ROOT_PASSWORD: &str = "VAULT_ROOT_PASSWORD";
pub use super::password::ENV_NEW_ROOT_PASSWORD;
pub const ENV_PIN: &str = "VAULT_PKCS11_PIN";

#[derive(Subcommand)]
pub enum HomeCmd {
    /// Create a vault home with its root key protected as --protect says.
    Init(ProtectArgs),
    /// Show how the root key is protected (no secret needed).
    Show,
    /// Change how the root key is protected: a fresh root key, every key re-wrapped.
    Protect(ProtectArgs),
    /// Replace the root key by a fresh one protected the same way; every key re-wrapped.
    RotateRoot,
    /// Print this home's Ed25519 public key (it signs every archive the home writes);
    /// give the file to `inspect --trust` / `audit archives --trust` elsewhere.
    PublicKey {
        /// Also write it to this file (one line, `vault-home-ed25519 <base64>`).
        #[arg(long, value_name = "F")]
        file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ProtectMode {
    /// A 0600 file in the home (the home's permissions are the protection).
    File,
    /// Wrapped under a passphrase (Argon2id + AES-256-GCM).
    Passphrase,
    /// Wrapped by a non-extractable AES key in a PKCS#11 token (an HSM).
    Pkcs11,
}

#[derive(Args)]
pub struct ProtectArgs {
    #[arg(long, value_enum, default_value = "file")]
    protect: ProtectMode,
    /// The PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, value_name = "PATH")]
    pkcs11_module: Option<PathBuf>,
    /// The label of the token that will hold the home's wrapping key.
    #[arg(long, value_name = "LABEL")]
    pkcs11_token: Option<String>,
    /// A file (mode 0600) holding the token's user PIN, remembered by the home.
    #[arg(long, value_name = "F")]
    pkcs11_pin_file: Option<PathBuf>,
    /// The new root passphrase (mode 0600) instead of VAULT_NEW_ROOT_PASSWORD or a prompt.
    #[arg(long, value_name = "F")]
    new_password_file: Option<PathBuf>,
    #[command(flatten)]
    kdf: super::args::KdfArgs,
}

impl ProtectArgs {
    fn resolve(&self) -> CliResult<(Protection, PasswordArg)> {
        let protection = match self.protect {
            ProtectMode::File => Protection::File,
            ProtectMode::Passphrase => Protection::Passphrase(self.kdf.params()),
            ProtectMode::Pkcs11 => {
                let (Some(module), Some(label)) = (&self.pkcs11_module, &self.pkcs11_token) else {
                    return Err(super::CliError::new(
                        crate::errors::Kind::Usage,
                        "--protect pkcs11 needs --pkcs11-module PATH and --pkcs11-token LABEL",
                    ));
                };
                Protection::Pkcs11 {
                    module: module.clone(),
                    token_label: label.clone(),
                    pin_file: self.pkcs11_pin_file.clone(),
                }
            }
        };
        let passphrase = PasswordArg {
            file: self.new_password_file.clone(),
            env_var: ENV_NEW_ROOT_PASSWORD,
            prompt: "New passphrase for the vault home's root key",
            new: true,
        };
        Ok((protection, passphrase))
    }
}

/// Reads passphrases and PINs from a file, the environment or the terminal.
pub struct CliUnlocker {
    pub root_password_file: Option<PathBuf>,
}

fn tty_secret(prompt: &str) -> Option<Result<Password, RootError>> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    Some(
        rpassword::prompt_password(format!("{prompt}: "))
            .map(Password::new)
            .map_err(|e| RootError::SecretFile {
                path: PathBuf::from("/dev/tty"),
                reason: e.to_string(),
            }),
    )
}

impl Unlocker for CliUnlocker {
    fn passphrase(&self) -> Result<Password, RootError> {
        if let Some(f) = &self.root_password_file {
            return root::read_secret_line(f);
        }
        if let Ok(v) = std::env::var(ENV_ROOT_PASSWORD) {
            return Ok(Password::new(v));
        }
        tty_secret("Passphrase of the vault home's root key")
            .unwrap_or(Err(RootError::PassphraseNeeded))
    }

    fn pin(&self, token: &TokenConfig) -> Result<Password, RootError> {
        if let Ok(v) = std::env::var(ENV_PIN) {
            return Ok(Password::new(v));
        }
        tty_secret(&format!("PIN of PKCS#11 token {:?}", token.token_label)).unwrap_or_else(|| {
            Err(RootError::Token(TokenError::PinNeeded {
                label: token.token_label.clone(),
            }))
        })
    }
}

/// How the root is protected, with what it depends on (`file`, `passphrase`,
/// `pkcs11:<token>`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProtectionView<'a> {
    #[serde(flatten)]
    info: &'a RootInfo,
    depends_on: String,
}

impl<'a> ProtectionView<'a> {
    fn of(info: &'a RootInfo) -> Self {
        ProtectionView {
            info,
            depends_on: info.dependency(),
        }
    }
}

#[derive(Serialize)]
struct HomeShown<'a> {
    home: String,
    protection: ProtectionView<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RootChanged<'a> {
    previous: ProtectionView<'a>,
    current: ProtectionView<'a>,
    rewrapped_keys: usize,
    tied_keys: usize,
    rewrapped_secrets: usize,
}

impl<'a> RootChanged<'a> {
    fn of(c: &'a RootChange) -> Self {
        RootChanged {
            previous: ProtectionView::of(&c.previous),
            current: ProtectionView::of(&c.current),
            rewrapped_keys: c.rewrapped_keys,
            tied_keys: c.tied_keys,
            rewrapped_secrets: c.rewrapped_secrets,
        }
    }
}

pub fn run(ctx: &Ctx, cmd: HomeCmd) -> CliResult {
    match cmd {
        HomeCmd::Init(a) => {
            let (protection, pw) = a.resolve()?;
            let info = home::init(
                ctx.home_dir(),
                &ctx.account,
                &protection,
                &|| pw.get(),
                Box::new(ctx.unlocker()),
            )?;
            ctx.print(&HomeShown {
                home: ctx.home_dir().display().to_string(),
                protection: ProtectionView::of(&info),
            })
        }
        HomeCmd::Show => {
            let info = home::show(&ctx.ops()?)?;
            ctx.print(&HomeShown {
                home: ctx.home_dir().display().to_string(),
                protection: ProtectionView::of(&info),
            })
        }
        HomeCmd::Protect(a) => {
            let (protection, pw) = a.resolve()?;
            let c = home::protect(&ctx.ops()?, &protection, &|| pw.get())?;
            ctx.print(&RootChanged::of(&c))
        }
        HomeCmd::RotateRoot => {
            let c = home::rotate_root(&ctx.ops()?)?;
            ctx.print(&RootChanged::of(&c))
        }
        HomeCmd::PublicKey { file } => public_key(ctx, file.as_deref()),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyShown {
    public_key: String,
    fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
}

fn public_key(ctx: &Ctx, file: Option<&std::path::Path>) -> CliResult {
    let key = home::public_key(&ctx.ops()?, file)?;
    ctx.print(&PublicKeyShown {
        public_key: key.line,
        fingerprint: key.fingerprint,
        file: file.map(|f| f.display().to_string()),
    })
}
