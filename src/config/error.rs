//! Why a command line is refused: Go's flag package's words for syntax
//! errors, etcd's own for its checks.

/// An invalid command line or environment; `main` prints it and exits 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Go's flag package words it this way.
    #[error("flag provided but not defined: {0}")]
    UnknownFlag(String),
    #[error("'{0}' is not a valid flag")]
    NotAFlag(String),
    /// Other command-line syntax errors reported by clap.
    #[error("{0}")]
    Usage(String),
    /// `origin` is "flag --name" or the environment variable's name.
    #[error("invalid value \"{value}\" for {origin}: {reason}")]
    InvalidValue {
        origin: String,
        value: String,
        reason: String,
    },
    #[error("{flag} is not supported by oxetcd: {reason}")]
    Unsupported { flag: String, reason: String },
    #[error("unexpected URL scheme \"{scheme}\" in {flag} \"{url}\"")]
    UrlScheme {
        scheme: String,
        flag: String,
        url: String,
    },
    #[error("invalid URL \"{url}\" in {flag}: {reason}")]
    InvalidUrl {
        flag: String,
        url: String,
        reason: String,
    },
    /// --config-file cannot be read, is not YAML, or has an unknown key or
    /// a value of the wrong type.
    #[error("cannot load config file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    /// etcd's own start-up checks, in etcd's words.
    #[error("{0}")]
    Invalid(String),
}
