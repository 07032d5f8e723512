//! The client store: stock agent binaries, one folder per `os-arch`, served with a signed
//! ticket appended. Binaries are read once and kept in memory; a download costs no copy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// A platform the box knows how to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// Folder name in the store, e.g. `linux-x86_64`.
    pub id: &'static str,
    pub label: &'static str,
    /// Binary file name in the folder.
    pub file: &'static str,
    /// Suffix of the downloaded file's name.
    pub suffix: &'static str,
}

pub const PLATFORMS: &[Platform] = &[
    Platform {
        id: "windows-x86_64",
        label: "Windows (64-bit)",
        file: "lifeline-agent.exe",
        suffix: ".exe",
    },
    Platform {
        id: "macos-aarch64",
        label: "macOS (Apple silicon)",
        file: "lifeline-agent",
        suffix: "",
    },
    Platform {
        id: "macos-x86_64",
        label: "macOS (Intel)",
        file: "lifeline-agent",
        suffix: "",
    },
    Platform {
        id: "linux-x86_64",
        label: "Linux (x86-64)",
        file: "lifeline-agent",
        suffix: "",
    },
    Platform {
        id: "linux-aarch64",
        label: "Linux (ARM 64-bit)",
        file: "lifeline-agent",
        suffix: "",
    },
];

/// The stock binary with `trailer` appended, as an attachment named `file_name` (streamed:
/// the binary is the store's cached copy, never rebuilt per download).
pub fn stamped_download(binary: Bytes, trailer: Vec<u8>, file_name: &str) -> Response {
    let tail = Bytes::from(trailer);
    let len = binary.len() + tail.len();
    let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(binary), Ok(tail)]);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

pub fn platform(id: &str) -> Option<&'static Platform> {
    PLATFORMS.iter().find(|p| p.id == id)
}

/// Guesses the visitor's platform from the User-Agent header.
pub fn detect(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("windows") {
        "windows-x86_64"
    } else if ua.contains("mac os x") || ua.contains("macintosh") {
        if ua.contains("intel") {
            "macos-x86_64"
        } else {
            "macos-aarch64"
        }
    } else if ua.contains("aarch64") || ua.contains("arm64") {
        "linux-aarch64"
    } else {
        "linux-x86_64"
    }
}

#[derive(Debug)]
pub struct ClientStore {
    root: PathBuf,
    cache: Mutex<HashMap<&'static str, (SystemTime, Bytes)>>,
}

impl ClientStore {
    pub fn new(root: &Path) -> Self {
        ClientStore {
            root: root.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, p: &Platform) -> PathBuf {
        self.root.join(p.id).join(p.file)
    }

    pub fn available(&self, p: &Platform) -> bool {
        self.path(p).is_file()
    }

    /// The stock binary for `p`, or `None` when the store has no build for it.
    pub async fn binary(&self, p: &'static Platform) -> std::io::Result<Option<Bytes>> {
        let path = self.path(p);
        let modified = match tokio::fs::metadata(&path).await {
            Ok(m) => m.modified()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some((t, b)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(p.id)
            && *t == modified
        {
            return Ok(Some(b.clone()));
        }
        let bytes = Bytes::from(tokio::fs::read(&path).await?);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.id, (modified, bytes.clone()));
        Ok(Some(bytes))
    }
}

impl ClientStore {
    /// The platform named in a download link and its stock binary, or the error a person
    /// downloading it should read (unknown platform, no build of it on this box yet).
    pub async fn download(
        &self,
        platform_id: &str,
    ) -> Result<(&'static Platform, Bytes), crate::web::ApiError> {
        use crate::web::ApiError;
        let Some(p) = platform(platform_id) else {
            return Err(ApiError::NotFound(format!(
                "unknown platform `{platform_id}`"
            )));
        };
        match self.binary(p).await {
            Ok(Some(binary)) => Ok((p, binary)),
            Ok(None) => Err(ApiError::NotFound(format!(
                "The support program for {} is not available on this support server yet.",
                p.label
            ))),
            Err(e) => Err(ApiError::Internal(Box::new(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(
            detect("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120"),
            "linux-x86_64"
        );
        assert_eq!(
            detect("Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            "windows-x86_64"
        );
        assert_eq!(
            detect("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"),
            "macos-x86_64"
        );
    }
}
