//! The box's HTTPS surface, spoken to like a browser or an integration would: the portal
//! form, the client download and the REST API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Portal {
    pub base: String,
    pub http: reqwest::blocking::Client,
}

impl Portal {
    /// The box's self-signed certificate is accepted here; the downloaded client pins it.
    pub fn new(addr: SocketAddr) -> Portal {
        let http = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTPS client");
        Portal {
            base: format!("https://{addr}"),
            http,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The status of `GET path`, or `None` when nothing answered.
    pub fn status(&self, path: &str) -> Option<u16> {
        self.http
            .get(self.url(path))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()
            .map(|r| r.status().as_u16())
    }

    pub fn text(&self, path: &str) -> String {
        self.http
            .get(self.url(path))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Logs in through the API; `Err(status)` when refused.
    pub fn token(&self, user: &str, password: &str) -> Result<String, u16> {
        let r = self
            .http
            .post(self.url("/api/v1/auth/token"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .map_err(|_| 0u16)?;
        let s = r.status().as_u16();
        if s != 200 {
            return Err(s);
        }
        let v: Value = r.json().map_err(|_| 0u16)?;
        v["access_token"].as_str().map(str::to_string).ok_or(0)
    }

    pub fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(Value::Null))
    }

    pub fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(Value::Null))
    }

    pub fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
        let s = r.status().as_u16();
        (s, r.json().unwrap_or(Value::Null))
    }

    /// The body of `GET path` with a bearer token; `Err(status)` unless 200 (0: no answer).
    pub fn bytes(&self, token: &str, path: &str) -> Result<Vec<u8>, u16> {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .map_err(|_| 0u16)?;
        let s = r.status().as_u16();
        if s != 200 {
            return Err(s);
        }
        r.bytes().map(|b| b.to_vec()).map_err(|_| 0)
    }

    /// A new 7-digit session key in `queue`.
    pub fn new_key(&self, token: &str, queue: &str) -> String {
        let (s, v) = self.post(
            token,
            "/api/v1/session-keys",
            json!({"queue": queue, "ttl_minutes": 20}),
        );
        assert_eq!(s, 200, "new session key: {v}");
        v["key"].as_str().expect("a key").to_string()
    }

    /// The customer's steps: key and name on the portal, the download page, the Linux
    /// client. Returns the downloaded file (executable) in `dir`.
    pub fn download_client(&self, key: &str, name: &str, lang: &str, dir: &Path) -> PathBuf {
        let r = self
            .http
            .post(self.url("/start"))
            .form(&[("key", key), ("name", name), ("lang", lang)])
            .send()
            .expect("POST /start");
        assert_eq!(r.status(), 303, "the portal takes the key");
        let page = r.headers()["location"].to_str().unwrap().to_string();
        let html = self.text(&page);
        let href = format!("{page}/linux-x86_64");
        assert!(
            html.contains(&href),
            "the download page links the Linux client"
        );
        let resp = self.http.get(self.url(&href)).send().expect("download");
        assert_eq!(resp.status(), 200, "the Linux client downloads");
        let cd = resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        let file_name = cd
            .split("filename=\"")
            .nth(1)
            .expect("a file name")
            .trim_end_matches('"')
            .to_string();
        let bytes = resp.bytes().expect("the client's bytes");
        let path = dir.join(file_name);
        std::fs::write(&path, &bytes).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}
