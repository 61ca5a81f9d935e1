//! Named remotes of a home, kept in `<home>/remotes.toml` (written atomically, 0600).
//!
//! A remote records where the bucket is and where its credentials come from, never the
//! credentials themselves: those stay in the environment or an AWS credentials file.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use url::Url;

use super::error::{RemoteError, io_err};
use crate::fsutil;

pub const FILE_NAME: &str = "remotes.toml";
/// Bound on remotes.toml (it holds a few lines per remote).
const MAX_FILE: u64 = 1 << 20;

/// `s3://BUCKET/PREFIX`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing '/'; may be empty.
    pub prefix: String,
}

impl S3Url {
    pub fn parse(s: &str) -> Result<Self, RemoteError> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| {
            RemoteError::Usage(format!(
                "'{s}' is not an s3:// URL; write s3://BUCKET/PREFIX"
            ))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(RemoteError::Usage(format!(
                "'{bucket}' is not a valid S3 bucket name (3 to 63 lower-case letters, digits, '-' or '.')"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(RemoteError::Usage(format!(
                "the prefix '{prefix}' has an empty, '.' or '..' component"
            )));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The object key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// What to list: the prefix followed by '/' (or everything).
    pub fn list_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RemoteConfig {
    #[serde(skip)]
    pub name: String,
    pub url: String,
    /// `None`: AWS S3 (`https://s3.<region>.amazonaws.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// A profile of the credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// An AWS-format credentials file (INI, `aws_access_key_id` / `aws_secret_access_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

impl RemoteConfig {
    pub fn s3_url(&self) -> Result<S3Url, RemoteError> {
        S3Url::parse(&self.url)
    }

    pub fn endpoint_url(&self) -> Result<Url, RemoteError> {
        let s = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region));
        let u = Url::parse(&s)
            .map_err(|e| RemoteError::Usage(format!("the endpoint '{s}' is not a URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return Err(RemoteError::Usage(format!(
                "the endpoint '{s}' must be http(s)://HOST[:PORT]"
            )));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(RemoteError::Usage(
                "the endpoint must not carry a user name or password; credentials come from the environment or a credentials file".into(),
            ));
        }
        Ok(u)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemotesFile {
    #[serde(default)]
    remote: BTreeMap<String, RemoteConfig>,
}

/// Every remote of the home at `home_dir`, by name.
pub fn load(home_dir: &Path) -> Result<Vec<RemoteConfig>, RemoteError> {
    let path = home_dir.join(FILE_NAME);
    let text = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path.display().to_string())(e)),
        Ok(m) if m.len() > MAX_FILE => {
            return Err(RemoteError::Usage(format!(
                "{} is larger than 1 MiB; it is not a remotes file",
                path.display()
            )));
        }
        Ok(_) => std::fs::read_to_string(&path).map_err(io_err(path.display().to_string()))?,
    };
    let file: RemotesFile = toml::from_str(&text)
        .map_err(|e| RemoteError::Usage(format!("{} is not valid: {e}", path.display())))?;
    Ok(file
        .remote
        .into_iter()
        .map(|(name, mut r)| {
            r.name = name;
            r
        })
        .collect())
}

pub fn find(home_dir: &Path, name: &str) -> Result<RemoteConfig, RemoteError> {
    load(home_dir)?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| RemoteError::UnknownRemote(name.to_string()))
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Adds `remote`; the caller holds the home lock.
pub fn add(home_dir: &Path, remote: RemoteConfig) -> Result<(), RemoteError> {
    if !valid_name(&remote.name) {
        return Err(RemoteError::Usage(format!(
            "'{}' is not a valid remote name (letters, digits, '-', '_', '.'; at most 64)",
            remote.name
        )));
    }
    remote.s3_url()?;
    remote.endpoint_url()?;
    let mut all = load(home_dir)?;
    if all.iter().any(|r| r.name == remote.name) {
        return Err(RemoteError::RemoteExists(remote.name));
    }
    all.push(remote);
    let file = RemotesFile {
        remote: all.into_iter().map(|r| (r.name.clone(), r)).collect(),
    };
    let text = toml::to_string(&file)
        .map_err(|e| RemoteError::Usage(format!("cannot encode the remotes: {e}")))?;
    let path = home_dir.join(FILE_NAME);
    fsutil::write_atomic(&path, text.as_bytes(), 0o600).map_err(io_err(path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse_and_bad_ones_are_refused() {
        let u = S3Url::parse("s3://vault-backups/site-a/ilo/").unwrap();
        assert_eq!(u.bucket, "vault-backups");
        assert_eq!(u.prefix, "site-a/ilo");
        assert_eq!(u.key("x.vault"), "site-a/ilo/x.vault");
        assert_eq!(u.list_prefix(), "site-a/ilo/");
        let bare = S3Url::parse("s3://bucket").unwrap();
        assert_eq!(bare.key("x"), "x");
        assert_eq!(bare.list_prefix(), "");
        for bad in [
            "http://b/p",
            "s3://B/p",
            "s3://ab",
            "s3://bucket/a/../b",
            "s3://b_x/p",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn remotes_round_trip_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let r = RemoteConfig {
            name: "rgw".into(),
            url: "s3://bucket/p".into(),
            endpoint: Some("http://127.0.0.1:7480".into()),
            region: "us-east-1".into(),
            path_style: true,
            ca_cert: None,
            profile: Some("backup".into()),
            credentials_file: None,
        };
        add(dir.path(), r.clone()).unwrap();
        assert_eq!(find(dir.path(), "rgw").unwrap(), r);
        assert!(matches!(
            add(dir.path(), r.clone()),
            Err(RemoteError::RemoteExists(_))
        ));
        assert!(matches!(
            find(dir.path(), "other"),
            Err(RemoteError::UnknownRemote(_))
        ));
        let bad = RemoteConfig {
            name: "x".into(),
            endpoint: Some("http://user:pw@host".into()),
            ..r
        };
        assert!(add(dir.path(), bad).is_err());
    }
}
