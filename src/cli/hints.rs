//! The next step of an error, in terms of `vault`'s commands and flags.
//!
//! Library errors state the fact ("no backup key with id 5dac…"): they are also read by
//! the demo, the fleet runner and other programs, which have no `--key` or `vault keys
//! list`. The CLI adds the step by error variant, here, so each hint sits beside the
//! flags it names and the visible sentence is the library's fact followed by the hint.
//!
//! Invariant: a hint only adds to the fact (or, for a fact that is about a flag, words
//! it as the flag); it never drops what the library said about the object.
use std::any::Any;

use crate::audit::AuditError;
use crate::bmc::BmcError;
use crate::bmc::redfish::UrlProblem;
use crate::bmc::tls;
use crate::config::ConfigError;
use crate::envelope::EnvelopeError;
use crate::home::HomeError;
use crate::home::root::RootError;
use crate::home::token::TokenError;
use crate::keystore::KeyError;
use crate::keystore::kdf::KdfError;
use crate::keystore::keyfile::KeyFileError;
use crate::ops::OpsError;
use crate::ops::error::PublicKeyError;
use crate::remote::RemoteError;
use crate::store::StoreError;
use crate::sweep::{Remedy, SweepReport};

/// What the CLI adds to a library error's message.
#[derive(Debug, PartialEq, Eq)]
enum Hint {
    /// Appended to the message (with its own separator, e.g. `"; run 'vault …'"`).
    Then(String),
    /// The whole sentence, when the fact itself is about a flag or a prompt.
    Instead(String),
}

impl Hint {
    fn then(s: impl Into<String>) -> Option<Hint> {
        Some(Hint::Then(s.into()))
    }

    fn instead(s: impl Into<String>) -> Option<Hint> {
        Some(Hint::Instead(s.into()))
    }

    /// The hint of an error shown after `prefix` (a wrapper's `"{path}: {source}"`).
    fn after(self, prefix: String) -> Hint {
        match self {
            Hint::Then(s) => Hint::Then(s),
            Hint::Instead(s) => Hint::Instead(prefix + &s),
        }
    }
}

/// `e`'s message as the CLI prints it: the library's fact and the CLI's hint.
pub fn message<E: std::fmt::Display + 'static>(e: &E) -> String {
    match hint(e) {
        None => e.to_string(),
        Some(Hint::Then(h)) => format!("{e}{h}"),
        Some(Hint::Instead(s)) => s,
    }
}

fn hint(e: &dyn Any) -> Option<Hint> {
    if let Some(e) = e.downcast_ref::<OpsError>() {
        ops(e)
    } else if let Some(e) = e.downcast_ref::<KeyError>() {
        key(e)
    } else if let Some(e) = e.downcast_ref::<StoreError>() {
        store(e)
    } else if let Some(e) = e.downcast_ref::<BmcError>() {
        bmc(e)
    } else if let Some(e) = e.downcast_ref::<HomeError>() {
        home(e)
    } else if let Some(e) = e.downcast_ref::<RootError>() {
        root(e)
    } else if let Some(e) = e.downcast_ref::<TokenError>() {
        token(e)
    } else if let Some(e) = e.downcast_ref::<AuditError>() {
        audit(e)
    } else if let Some(e) = e.downcast_ref::<RemoteError>() {
        remote(e)
    } else if let Some(e) = e.downcast_ref::<EnvelopeError>() {
        envelope(e)
    } else if let Some(e) = e.downcast_ref::<ConfigError>() {
        config(e)
    } else if let Some(e) = e.downcast_ref::<KeyFileError>() {
        key_file(e)
    } else if let Some(e) = e.downcast_ref::<KdfError>() {
        kdf(e)
    } else {
        None
    }
}

const DIFFERENT_SYSTEM: &str = "--allow-different-system";

fn ops(e: &OpsError) -> Option<Hint> {
    match e {
        OpsError::Home(e) => home(e),
        OpsError::Key(e) => key(e),
        OpsError::Root(e) => root(e),
        OpsError::Store(e) => store(e),
        OpsError::Bmc(e) => bmc(e),
        OpsError::Audit(e) => audit(e),
        OpsError::Remote(e) => remote(e),
        OpsError::KeyFile { path, source } => {
            key_file(source).map(|h| h.after(format!("{}: ", path.display())))
        }
        OpsError::Import { path, source } => {
            key(source).map(|h| h.after(format!("{}: ", path.display())))
        }
        OpsError::KdfParams(e) => kdf(e),
        OpsError::KeyOutOfScope { scope, .. } => Hint::then(format!(
            "; pick a key of the same scope (vault keys list --scope {scope}) or change --scope/--domain"
        )),
        OpsError::SerialMismatch { .. } => Hint::then(format!(
            ". If the system board was replaced, pass {DIFFERENT_SYSTEM}"
        )),
        OpsError::NoArchiveSerial { .. } => {
            Hint::then(format!(". Pass {DIFFERENT_SYSTEM} to restore it anyway"))
        }
        OpsError::NoBmcSerial { .. } => {
            Hint::then(format!(". Pass {DIFFERENT_SYSTEM} to restore anyway"))
        }
        OpsError::RestoreNotConfirmed { host } => Hint::instead(format!(
            "restoring resets BMC {host}: pass --yes to confirm (there is no terminal to ask)"
        )),
        OpsError::CompromisedRewrap(id) => Hint::then(format!(
            ". Use 'vault backup rewrap --all --from {id} --reencrypt'"
        )),
        OpsError::TrustFile {
            source: PublicKeyError::NotAPublicKey,
            ..
        } => Hint::then("; make one with 'vault home public-key --file F'"),
        OpsError::PolicyKeepsNothing => Hint::instead(
            "a retention policy must keep something (a --keep-* of at least 1): this one would remove every archive",
        ),
        _ => None,
    }
}

fn key(e: &KeyError) -> Option<Hint> {
    match e {
        KeyError::Home(e) => home(e),
        KeyError::KeyFile(e) => key_file(e),
        KeyError::NotFound(_) => Hint::then("; run 'vault keys list' to see the keys in this home"),
        KeyError::NoDefault { scope, domain } => {
            let flag = domain
                .as_ref()
                .map(|d| format!(" --domain {d}"))
                .unwrap_or_default();
            Hint::then(format!(
                "; create one with 'vault keys create --scope {scope}{flag} --default' or pick one with 'vault keys set-default --id ID'"
            ))
        }
        KeyError::Retired(_) => {
            Hint::then("; use --key with an active key or run 'vault keys rotate'")
        }
        KeyError::Compromised(id) => Hint::then(format!(
            "; re-encrypt its archives with 'vault backup rewrap --reencrypt --from {id}'"
        )),
        KeyError::DomainWithSystemScope => Hint::instead(
            "--domain applies only to domain keys; add --scope domain or drop --domain",
        ),
        KeyError::ScopeMismatch { file, flag } => Hint::instead(format!(
            "the key file holds a {file} key but --scope is {flag}; pass --scope {file} to import it"
        )),
        KeyError::InUse { id, .. } => Hint::then(format!(
            "; rewrap them with 'vault backup rewrap --all --from {id}' first, or pass --force to delete anyway (those archives become unreadable)"
        )),
        KeyError::IsDefault(_) => {
            Hint::then("; make another key the default first, or pass --force")
        }
        KeyError::NoToken(mode) => Hint::instead(format!(
            "--tied-to-hsm needs a vault home whose root key is in a PKCS#11 token (mode pkcs11); this home is in mode {mode}"
        )),
        _ => None,
    }
}

fn store(e: &StoreError) -> Option<Hint> {
    match e {
        StoreError::NotFound(_) => Hint::then("; run 'vault backup list' to see the archives"),
        StoreError::IdMismatch { .. } => Hint::then(" (--file)"),
        StoreError::Archive { path, source } => {
            envelope(source).map(|h| h.after(format!("{path}: ")))
        }
        _ => None,
    }
}

fn envelope(e: &EnvelopeError) -> Option<Hint> {
    match e {
        EnvelopeError::KeyUnavailable { .. } => Hint::then("; import it with 'vault keys upload'"),
        _ => None,
    }
}

fn audit(e: &AuditError) -> Option<Hint> {
    match e {
        AuditError::CorruptLine { .. } => {
            Hint::then("; run 'vault audit verify' to see where the log is broken")
        }
        AuditError::LastRecordUnreadable { .. } => {
            Hint::then("; run 'vault audit verify', then move the file aside to start a new chain")
        }
        AuditError::BadTime { .. } => Hint::then("; run 'vault audit verify'"),
        _ => None,
    }
}

fn home(e: &HomeError) -> Option<Hint> {
    match e {
        HomeError::Root(e) => root(e),
        HomeError::AlreadyInitialised { .. } => {
            Hint::then("; use 'vault home protect' to change how it is protected")
        }
        _ => None,
    }
}

fn root(e: &RootError) -> Option<Hint> {
    match e {
        RootError::PassphraseNeeded => Hint::instead(
            "the root key of this vault home is protected by a passphrase: pass --root-password-file FILE or set VAULT_ROOT_PASSWORD (no terminal to prompt on)",
        ),
        RootError::Token(e) => token(e),
        RootError::Kdf(e) => kdf(e),
        _ => None,
    }
}

fn token(e: &TokenError) -> Option<Hint> {
    match e {
        TokenError::MissingModule { .. } => Hint::then("; install it or fix --pkcs11-module"),
        TokenError::MissingToken { .. } => Hint::then("; insert the token or fix --pkcs11-token"),
        TokenError::PinNeeded { label } => Hint::instead(format!(
            "the PIN of PKCS#11 token {label:?} is needed: configure --pkcs11-pin-file, set VAULT_PKCS11_PIN, or run on a terminal"
        )),
        _ => None,
    }
}

fn remote(e: &RemoteError) -> Option<Hint> {
    match e {
        RemoteError::UnknownRemote(_) => {
            Hint::then("; add it first (remote add NAME --url s3://BUCKET/PREFIX)")
        }
        RemoteError::Transport { .. } => Hint::then(
            "; check --endpoint, the network and (for https) the certificate or --ca-cert",
        ),
        RemoteError::NoSuchObject { .. } => {
            Hint::then("; run 'vault backup list --remote NAME' to see what is there")
        }
        RemoteError::Archive { what, source } => {
            envelope(source).map(|h| h.after(format!("{what}: ")))
        }
        _ => None,
    }
}

fn config(e: &ConfigError) -> Option<Hint> {
    match e {
        ConfigError::Invalid { .. } => {
            Hint::then("; see 'vault config show --help' for the settings")
        }
        _ => None,
    }
}

fn key_file(e: &KeyFileError) -> Option<Hint> {
    match e {
        KeyFileError::Kdf(e) => kdf(e),
        _ => None,
    }
}

fn kdf(e: &KdfError) -> Option<Hint> {
    match e {
        KdfError::CostlyImport { .. } => {
            Hint::then(". If you trust the file, pass --allow-costly-kdf")
        }
        _ => None,
    }
}

fn bmc(e: &BmcError) -> Option<Hint> {
    match e {
        BmcError::InvalidUrl {
            reason: UrlProblem::Credentials,
            ..
        } => Hint::then("; use --bmc-user and --bmc-password-file"),
        BmcError::PlaintextRefused { .. } => Hint::then(
            "; use https://, or pass --allow-http (inventory: allow_http = true) knowingly",
        ),
        BmcError::NoSessions { .. } => {
            Hint::then(": log in with --auth basic (backups work; restore needs a session)")
        }
        BmcError::NeedsSession { .. } | BmcError::RestoreNeedsSession { .. } => {
            Hint::then("; use --auth session")
        }
        // The detail is the TLS library's text: the pin's words are found by their constant.
        BmcError::Tls { detail, .. } if detail.contains(tls::NOT_PINNED) => Hint::instead(
            e.to_string()
                .replace(tls::NOT_PINNED, "does not match --tls-fingerprint"),
        ),
        BmcError::Tls { .. } => Hint::then(
            ": if its certificate is self-signed or from a private CA, pass --ca-cert with that CA (or --insecure, knowingly)",
        ),
        BmcError::SessionLimit { .. } => Hint::then(", or use --auth basic"),
        BmcError::Redirect { .. } => Hint::then(": pass the final URL with --bmc"),
        BmcError::Timeout { .. } => Hint::then("; raise --timeout or check the network"),
        BmcError::Auth {
            status,
            during_login: true,
            ..
        } if *status != 403 => Hint::then(": check --bmc-user and the password"),
        _ => None,
    }
}

/// A sweep report as the CLI prints it: each finding's message followed by its remedy,
/// worded as the command that does it.
pub fn sweep_report(mut report: SweepReport) -> SweepReport {
    for f in report
        .archives
        .iter_mut()
        .flat_map(|a| a.findings.iter_mut())
    {
        if let Some(r) = f.remedy {
            f.message.push_str(&remedy(r));
        }
    }
    report
}

fn remedy(r: Remedy) -> String {
    match r {
        Remedy::FinishRewrap(id) => {
            format!("; run 'vault backup rewrap --id {id}' again to complete it")
        }
        Remedy::RepairSlot => " ('vault backup rewrap')".into(),
        Remedy::ImportKey => "; import it with 'vault keys upload'".into(),
        Remedy::Reencrypt(id) => {
            format!("; re-encrypt it with 'vault backup rewrap --id {id} --reencrypt'")
        }
        Remedy::Rewrap(id) => {
            format!("; move it to the active key with 'vault backup rewrap --id {id}'")
        }
        Remedy::RotateKey => "; run 'vault keys rotate', then 'vault backup rewrap --all'".into(),
        Remedy::LongerRetention => {
            "; push it again with a longer --retain or extend its retention".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_the_fact_through_wrappers() {
        let e = OpsError::Key(KeyError::NotFound("5dac".into()));
        assert_eq!(
            message(&e),
            "no backup key with id 5dac; run 'vault keys list' to see the keys in this home"
        );
        let e = OpsError::Import {
            path: "k.json".into(),
            source: KeyError::ScopeMismatch {
                file: crate::scope::Scope::Domain,
                flag: crate::scope::Scope::System,
            },
        };
        assert_eq!(
            message(&e),
            "k.json: the key file holds a domain key but --scope is system; pass --scope domain to import it"
        );
        // An error without a hint is its own message.
        let e = KeyError::BadDomain("x y".into());
        assert_eq!(message(&e), e.to_string());
    }

    #[test]
    fn library_messages_name_no_command() {
        let facts = [
            KeyError::NotFound("5dac".into()).to_string(),
            KeyError::DomainWithSystemScope.to_string(),
            RootError::PassphraseNeeded.to_string(),
            OpsError::PolicyKeepsNothing.to_string(),
            UrlProblem::Credentials.to_string(),
            PublicKeyError::NotAPublicKey.to_string(),
            tls::NOT_PINNED.to_string(),
            crate::envelope::EnvelopeError::KeyUnavailable { key_ids: vec![] }.to_string(),
            BmcError::Timeout {
                host: "ilo".into(),
                what: "login".into(),
                after: std::time::Duration::from_secs(3),
            }
            .to_string(),
        ];
        for f in facts {
            assert!(!f.contains("'vault ") && !f.contains("--"), "{f}");
        }
    }

    /// A sweep finding's remedy is printed after its fact, as the command that does it.
    #[test]
    fn sweep_remedies_are_worded_as_commands() {
        use crate::sweep::{self, FindingCode, SweepKeys, SweepOptions};
        let id = uuid::Uuid::new_v4();
        let status = |_: &uuid::Uuid| None;
        let keys = SweepKeys {
            status: &status,
            confirmed: &|_, _| false,
            material: None,
        };
        let opts = SweepOptions {
            trusted: Vec::new(),
            max_age_days: None,
            rotation_days: None,
            now: crate::clock::now(),
            threads: 1,
        };
        let mut r =
            sweep::check_inspected("x.vault", Err(&EnvelopeError::NotAnArchive), &keys, &opts);
        let plain = r.findings[0].message.clone();
        r.add_finding(
            FindingCode::KeyRetired,
            "the fact",
            Some(Remedy::Rewrap(id)),
        );
        let report = sweep_report(sweep::summarize(vec![r], Vec::new()));
        let f = &report.archives[0].findings;
        assert_eq!(f[0].message, plain, "no remedy, no hint");
        assert_eq!(
            f[1].message,
            format!("the fact; move it to the active key with 'vault backup rewrap --id {id}'")
        );
        for r in [
            Remedy::FinishRewrap(id),
            Remedy::RepairSlot,
            Remedy::ImportKey,
            Remedy::Reencrypt(id),
            Remedy::Rewrap(id),
            Remedy::RotateKey,
            Remedy::LongerRetention,
        ] {
            let h = remedy(r);
            assert!(h.contains("'vault ") || h.contains("--"), "{h}");
        }
    }

    /// The next steps the library messages used to carry (and the unit tests of
    /// `bmc`, `audit` and `envelope` asserted on) are in the CLI's message.
    #[test]
    fn each_moved_hint_is_in_the_cli_message() {
        let host = || "127.0.0.1:1".to_string();
        let mut cases: Vec<(String, &str)> = vec![
            (
                message(&BmcError::Tls {
                    host: host(),
                    detail: "UnknownIssuer".into(),
                }),
                "--ca-cert",
            ),
            (
                message(&BmcError::Auth {
                    host: host(),
                    status: 401,
                    message_id: None,
                    during_login: true,
                }),
                "--bmc-user",
            ),
            (
                message(&BmcError::Timeout {
                    host: host(),
                    what: "login".into(),
                    after: std::time::Duration::from_secs(1),
                }),
                "--timeout",
            ),
            (
                message(&BmcError::NoSessions {
                    host: host(),
                    detail: "no Links.Sessions".into(),
                }),
                "--auth basic",
            ),
            (
                message(&BmcError::PlaintextRefused { host: host() }),
                "--allow-http",
            ),
            (
                message(&BmcError::NeedsSession {
                    host: host(),
                    what: "download the backup by POST",
                }),
                "--auth session",
            ),
            (
                message(&OpsError::Bmc(BmcError::RestoreNeedsSession {
                    host: host(),
                })),
                "--auth session",
            ),
            (
                message(&AuditError::LastRecordUnreadable {
                    path: "audit.log".into(),
                    reason: "bad".into(),
                }),
                "vault audit verify",
            ),
            (
                message(&StoreError::Archive {
                    path: "a.vault".into(),
                    source: EnvelopeError::KeyUnavailable {
                        key_ids: vec![uuid::Uuid::nil()],
                    },
                }),
                "vault keys upload",
            ),
        ];
        let pin = message(&BmcError::Tls {
            host: host(),
            detail: format!(
                "unexpected error: the certificate (sha256:ab) {}",
                tls::NOT_PINNED
            ),
        });
        assert!(
            pin.contains("(sha256:ab) does not match --tls-fingerprint")
                && !pin.contains("--ca-cert"),
            "{pin}"
        );
        cases.extend([
            (
                message(&BmcError::InvalidUrl {
                    host: host(),
                    reason: UrlProblem::Credentials,
                }),
                "--bmc-user and --bmc-password-file",
            ),
            (
                message(&OpsError::TrustFile {
                    path: "home.pub".into(),
                    source: PublicKeyError::NotAPublicKey,
                }),
                "'vault home public-key --file F'",
            ),
        ]);
        for (msg, hint) in cases {
            assert!(msg.contains(hint), "{msg}");
        }
        // A login refused with 403 is about privileges, not the user name.
        let e = BmcError::Auth {
            host: host(),
            status: 403,
            message_id: None,
            during_login: true,
        };
        assert_eq!(message(&e), e.to_string());
    }
}
