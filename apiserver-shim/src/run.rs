//! Start-up, top to bottom: flags, credentials, certificate, store, its
//! compactor, the default namespaces, the listener; then serve until
//! SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::auth::Tokens;
use crate::cache;
use crate::cli::{Command, Flags};
use crate::error::ApiError;
use crate::http::{self, App};
use crate::kubeconfig;
use crate::pki::{self, Generated};
use crate::rest::{crds, namespaces, Api};
use crate::store::compactor;
use crate::store::embedded::Embedded;
use crate::store::remote::Remote;
use crate::store::Store;

/// How long start-up waits for the store to take the default namespaces.
const STORE_WAIT: Duration = Duration::from_secs(60);

pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn tokens(flags: &Flags) -> Result<Tokens, Error> {
    Ok(match &flags.token_auth_file {
        Some(path) => Tokens::from_file(path)?,
        None => Tokens::generated(&flags.data_dir)?,
    })
}

/// The serving certificate and key files, generated when not given.
fn certificate(flags: &Flags) -> Result<(PathBuf, PathBuf), Error> {
    match (&flags.tls_cert_file, &flags.tls_private_key_file) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone())),
        _ => {
            let g = Generated::new(&flags.data_dir);
            g.ensure(&pki::default_hosts(&flags.bind_address))?;
            Ok((g.cert(), g.key()))
        }
    }
}

/// An exclusive flock(2) on `<data-dir>/.setup.lock`, released on drop: the
/// server and `kubeconfig` started together generate the CA and the token
/// once, and neither reads the other's half-written files.
struct SetupLock(std::fs::File);

impl SetupLock {
    fn take(data_dir: &std::path::Path) -> Result<Self, Error> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(data_dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join(".setup.lock"))?;
        // SAFETY: flock on a descriptor this File owns for the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(SetupLock(file))
    }
}

pub async fn main(command: Option<Command>, flags: Flags) -> Result<(), Error> {
    if let Some(why) = flags.conflicts() {
        return Err(why.into());
    }
    let setup = SetupLock::take(&flags.data_dir)?;
    let tokens = tokens(&flags)?;
    let (cert, key) = certificate(&flags)?;
    // Closing the file releases the lock.
    drop(setup.0);
    if let Some(Command::Kubeconfig { server }) = command {
        let server = server
            .unwrap_or_else(|| kubeconfig::server_url(&flags.bind_address, flags.secure_port));
        let ca = pki::trust_anchor_pem(&cert)?;
        print!("{}", kubeconfig::render(&server, &ca, tokens.admin_token()));
        return Ok(());
    }
    let tls = pki::server_config(&cert, &key, flags.client_ca_file.as_deref())?;

    let mut embedded = None;
    let store: Arc<dyn Store> = if flags.etcd_servers.is_empty() {
        let dir = flags.data_dir.join("etcd");
        let e = Arc::new(Embedded::start(&dir).await?);
        info!(data_dir = %dir.display(), "embedded oxetcd started");
        embedded = Some(e.clone());
        e
    } else {
        info!(servers = ?flags.etcd_servers, "using etcd");
        let tls = flags
            .etcd_servers
            .iter()
            .any(|s| s.starts_with("https://"))
            .then(|| flags.etcd_tls())
            .transpose()?;
        Arc::new(Remote::connect(&flags.etcd_servers, tls)?)
    };
    let compactor = (!flags.etcd_compaction_interval.is_zero()).then(|| {
        let interval = flags.etcd_compaction_interval;
        tokio::spawn(compactor::run(store.clone(), interval))
    });
    let mut api = Api::new(store, &flags.etcd_prefix).with_event_ttl(flags.event_ttl);
    if flags.default_watch_cache_size > 0 {
        api = api.with_watch_cache(cache::Config {
            window_min: flags.default_watch_cache_size,
        });
    }
    bootstrap(&api).await?;
    api.start_caches();
    // The stored CRDs' resources are served from the first request on.
    crds::reconcile(&api).await?;
    crds::spawn_watch(api.clone());

    let listener = TcpListener::bind((flags.bind_address.as_str(), flags.secure_port)).await?;
    let address = listener.local_addr()?.to_string();
    let app = Arc::new(App {
        api,
        tokens,
        address: address.clone(),
        health_key: format!("{}/health", flags.etcd_prefix.trim_end_matches('/')),
    });
    info!("serving the Kubernetes API on https://{address}");
    let server = tokio::spawn(http::serve(listener, tls, app));

    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("stopping");
    server.abort();
    if let Some(c) = compactor {
        c.abort();
    }
    if let Some(e) = embedded {
        e.stop().await;
    }
    Ok(())
}

/// The default namespaces, retried while the store is not ready (a remote
/// etcd still starting, an embedded member electing itself).
async fn bootstrap(api: &Api) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + STORE_WAIT;
    loop {
        match namespaces::bootstrap(api).await {
            Ok(()) => return Ok(()),
            Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_)))
                if tokio::time::Instant::now() < deadline =>
            {
                warn!("store not ready: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("creating the default namespaces: {e}").into()),
        }
    }
}
