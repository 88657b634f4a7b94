//! Configuration: serde types, loaded in layers, then validated without I/O.
//!
//! Layers, later wins: `config/default.toml` (compiled in, so it is the one place defaults live),
//! the user's `--config FILE`, then environment variables `FAULTLINE_<SECTION>__<KEY>`. The double
//! underscore separates nesting levels so keys that contain `_` survive
//! (`FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS=true`).

use serde::Deserialize;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

/// The defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable prefix.
pub const ENV_PREFIX: &str = "FAULTLINE";

/// Why configuration cannot be used. Messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed, or a value has the wrong type.
    #[error("configuration cannot be read: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Which model to serve.
    pub model: ModelSection,
    /// How input rows are read.
    pub input: InputSection,
}

/// `[model]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model directory; empty for the embedded model.
    pub dir: String,
    /// Threshold override; negative for the card's.
    pub threshold: f64,
}

/// `[input]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// Ignore unknown CSV columns instead of refusing the file.
    pub allow_extra_columns: bool,
    /// Rows per CSV batch.
    pub csv_batch_rows: usize,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Model directory; `None` for the embedded model.
    pub model_dir: Option<PathBuf>,
    /// Threshold override.
    pub threshold: Option<f32>,
    /// Ignore unknown CSV columns.
    pub allow_extra_columns: bool,
    /// Rows per CSV batch.
    pub csv_batch_rows: NonZeroUsize,
}

impl RawConfig {
    /// Loads the layers: defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<RawConfig, ConfigError> {
        RawConfig::load_with_env(file, std::env::vars())
    }

    /// As [`RawConfig::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawConfig, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // Only FAULTLINE_<SECTION>__<KEY>: every key lives in a section, and other FAULTLINE_*
        // variables (a test's FAULTLINE_BIN, say) are not configuration.
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")) && k.contains("__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        Ok(builder.build()?.try_deserialize()?)
    }

    /// Checks ranges and cross-field rules; no I/O.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let threshold = if self.model.threshold < 0.0 {
            None
        } else if self.model.threshold > 0.0 && self.model.threshold < 1.0 {
            Some(self.model.threshold as f32)
        } else {
            return Err(ConfigError::Invalid(format!(
                "model.threshold is {}; set it between 0 and 1 (exclusive), or to -1 to use the model card's threshold",
                self.model.threshold
            )));
        };
        let csv_batch_rows = NonZeroUsize::new(self.input.csv_batch_rows).ok_or_else(|| {
            ConfigError::Invalid(
                "input.csv_batch_rows is 0; set it to at least 1 (the default is 4096)".into(),
            )
        })?;
        let dir = self.model.dir.trim();
        Ok(Config {
            model_dir: (!dir.is_empty()).then(|| PathBuf::from(dir)),
            threshold,
            allow_extra_columns: self.input.allow_extra_columns,
            csv_batch_rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let c = RawConfig::load_with_env(None, env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.model_dir, None);
        assert_eq!(c.threshold, None);
        assert!(!c.allow_extra_columns);
        assert_eq!(c.csv_batch_rows.get(), 4096);
    }

    #[test]
    fn env_overrides_nested_keys_that_contain_underscores() {
        let c = RawConfig::load_with_env(
            None,
            env(&[
                ("FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS", "true"),
                ("FAULTLINE_INPUT__CSV_BATCH_ROWS", "7"),
                ("FAULTLINE_MODEL__DIR", "/srv/models/x"),
                ("FAULTLINE_MODEL__THRESHOLD", "0.25"),
                ("UNRELATED__THING", "1"),
                ("FAULTLINE_BIN", "/not/config"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert!(c.allow_extra_columns);
        assert_eq!(c.csv_batch_rows.get(), 7);
        assert_eq!(c.model_dir, Some(PathBuf::from("/srv/models/x")));
        assert_eq!(c.threshold, Some(0.25));
    }

    #[test]
    fn a_file_layers_over_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[input]\nallow_extra_columns = true\n").unwrap();
        let c = RawConfig::load_with_env(Some(&path), env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert!(c.allow_extra_columns);
        assert_eq!(c.csv_batch_rows.get(), 4096);

        std::fs::write(&path, "[input]\nallow_extra_colums = true\n").unwrap();
        let e = RawConfig::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("allow_extra_colums"), "{e}");
    }

    #[test]
    fn out_of_range_values_say_what_to_change() {
        let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_MODEL__THRESHOLD", "1.5")]))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_INPUT__CSV_BATCH_ROWS", "0")]))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
    }
}
