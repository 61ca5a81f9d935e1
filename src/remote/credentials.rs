//! Where S3 credentials come from: never argv, never the remotes file.
//!
//! Order: the remote's own credentials file/profile when it names one; else the
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
//! `AWS_SESSION_TOKEN`); else the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`
//! or `~/.aws/credentials`) under `AWS_PROFILE` or `default`. Credentials files must not
//! be readable by group or others. Values are held in zeroizing strings until handed to
//! the signer.
use std::io::Read;
use std::path::{Path, PathBuf};

use rusty_s3::Credentials;
use zeroize::Zeroizing;

use super::config::RemoteConfig;
use super::error::RemoteError;

/// What the CLI read from the environment (the library reads none itself).
#[derive(Default)]
pub struct CredentialEnv {
    pub access_key_id: Option<Zeroizing<String>>,
    pub secret_access_key: Option<Zeroizing<String>>,
    pub session_token: Option<Zeroizing<String>>,
    pub profile: Option<String>,
    pub shared_credentials_file: Option<PathBuf>,
    pub user_home: Option<PathBuf>,
}

/// Bound on a credentials file.
const MAX_FILE: u64 = 1 << 20;

pub fn resolve(remote: &RemoteConfig, env: &CredentialEnv) -> Result<Credentials, RemoteError> {
    let from_file = |path: &Path, profile: &str| -> Result<Credentials, RemoteError> {
        let (key, secret, token) = read_profile(path, profile)?;
        Ok(match token {
            Some(t) => Credentials::new_with_token(key.as_str(), secret.as_str(), t.as_str()),
            None => Credentials::new(key.as_str(), secret.as_str()),
        })
    };
    if remote.credentials_file.is_some() || remote.profile.is_some() {
        let path = remote
            .credentials_file
            .clone()
            .or_else(|| env.shared_credentials_file.clone())
            .or_else(|| env.user_home.as_ref().map(|h| h.join(".aws/credentials")))
            .ok_or_else(|| RemoteError::NoCredentials {
                remote: remote.name.clone(),
                detail: "no credentials file and no home directory".into(),
            })?;
        return from_file(&path, remote.profile.as_deref().unwrap_or("default"));
    }
    if let (Some(k), Some(s)) = (&env.access_key_id, &env.secret_access_key) {
        return Ok(match &env.session_token {
            Some(t) => Credentials::new_with_token(k.as_str(), s.as_str(), t.as_str()),
            None => Credentials::new(k.as_str(), s.as_str()),
        });
    }
    let path = env
        .shared_credentials_file
        .clone()
        .or_else(|| env.user_home.as_ref().map(|h| h.join(".aws/credentials")));
    match path {
        Some(p) if p.exists() => from_file(&p, env.profile.as_deref().unwrap_or("default")),
        _ => Err(RemoteError::NoCredentials {
            remote: remote.name.clone(),
            detail: "none in the environment and no shared credentials file".into(),
        }),
    }
}

type Triple = (
    Zeroizing<String>,
    Zeroizing<String>,
    Option<Zeroizing<String>>,
);

/// Reads one profile of an AWS-format credentials file (INI sections `[name]` with
/// `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`).
fn read_profile(path: &Path, profile: &str) -> Result<Triple, RemoteError> {
    let fail = |reason: String| RemoteError::CredentialsFile {
        path: path.display().to_string(),
        reason,
    };
    let f = crate::fsutil::open_secret_file(path).map_err(|e| fail(e.to_string()))?;
    let mut text = Zeroizing::new(String::new());
    f.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(fail("larger than 1 MiB".into()));
    }
    let (mut key, mut secret, mut token) = (None, None, None);
    let mut in_profile = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            in_profile = section == profile || section == format!("profile {profile}");
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Zeroizing::new(v.trim().to_string());
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    match (key, secret) {
        (Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => Ok((k, s, token)),
        _ => Err(fail(format!(
            "profile [{profile}] has no aws_access_key_id and aws_secret_access_key"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn remote(file: Option<PathBuf>, profile: Option<&str>) -> RemoteConfig {
        RemoteConfig {
            name: "r".into(),
            url: "s3://bucket/p".into(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            ca_cert: None,
            profile: profile.map(str::to_string),
            credentials_file: file,
        }
    }

    #[test]
    fn profile_from_file_env_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = sdefault\n\n[backup]\naws_access_key_id=AKBACKUP\naws_secret_access_key=sbackup\naws_session_token = tok\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = CredentialEnv::default();
        let c = resolve(&remote(Some(path.clone()), Some("backup")), &env).unwrap();
        assert_eq!(c.key(), "AKBACKUP");
        assert_eq!(c.token(), Some("tok"));
        let c = resolve(&remote(Some(path.clone()), None), &env).unwrap();
        assert_eq!(c.key(), "AKDEFAULT");
        assert!(matches!(
            resolve(&remote(Some(path.clone()), Some("nope")), &env),
            Err(RemoteError::CredentialsFile { .. })
        ));
        // The environment wins when the remote names no file or profile.
        let env = CredentialEnv {
            access_key_id: Some(Zeroizing::new("AKENV".into())),
            secret_access_key: Some(Zeroizing::new("senv".into())),
            shared_credentials_file: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(resolve(&remote(None, None), &env).unwrap().key(), "AKENV");
        // A file others can read is refused, and the error holds no secret.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = resolve(&remote(Some(path), Some("backup")), &env)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!e.contains("sbackup"));
        // Nothing anywhere.
        assert!(matches!(
            resolve(&remote(None, None), &CredentialEnv::default()),
            Err(RemoteError::NoCredentials { .. })
        ));
    }
}
