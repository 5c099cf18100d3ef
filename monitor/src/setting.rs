//! The error every settings layer gives (the monitor's own in [`crate::config`], the
//! HTTP server's, federation's): which key is invalid and why. A leaf module, so the
//! layers and the configuration that gathers them import it and not each other.

/// A setting that does not validate; `key` is its environment variable name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {key}: {message}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub message: String,
}

impl InvalidSetting {
    pub fn new(key: &'static str, message: impl Into<String>) -> InvalidSetting {
        InvalidSetting {
            key,
            message: message.into(),
        }
    }
}
