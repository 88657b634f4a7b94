//! Secrets (passwords, tokens): kept out of logs, and readable from files so they stay out of the
//! configuration.

/// A password or token: its `Debug` never shows it (read it with `&*secret`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<T: Into<String>> From<T> for Secret {
    fn from(s: T) -> Secret {
        Secret(s.into())
    }
}

/// Reads a secret from `path`: the whole file, without the trailing newline.
pub fn read_secret(setting: &str, path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path.trim())
        .map_err(|e| format!("{setting} = {path}: cannot read it: {e}"))?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        return Err(format!("{setting} = {path}: the file is empty"));
    }
    Ok(text)
}
