//! Assembly: configuration -> logging -> metadata store -> actors -> HTTP server, and the one
//! ordered shutdown path (stop HTTP, stop tasks with flush + fsync + checkpoint, exit).

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use slog::{Logger, error, info, warn};

use crate::actors::Supervisor;
use crate::actors::supervisor::Shutdown;
use crate::api::{self, ApiState};
use crate::config::Settings;
use crate::meta::cipher::Cipher;
use crate::meta::{ConnTuning, MetaDsn, Store, guard};
use crate::sd_notify::{Notifier, NotifyError};
use crate::telemetry::logging;

/// Opens the metadata store the settings point at (SQLite is migrated on open), with the
/// secrets cipher, and checks every stored password decrypts (legacy clear text is encrypted).
/// A SQLite file is checked first (`meta::guard`); the answer names what to watch while running.
pub fn open_store(settings: &Settings) -> anyhow::Result<(Store, Option<MetaWatch>)> {
    let dsn = MetaDsn::parse(settings.meta_dsn.expose(), &settings.data_dir).map_err(anyhow::Error::msg)?;
    if let MetaDsn::Sqlite(path) = &dsn {
        guard::check_at_start(path, &settings.data_dir)?;
    }
    let cipher = if settings.secrets.key.is_empty() {
        Cipher::load_or_generate(&crate::layout::DataLayout::new(&settings.data_dir).secrets_key())?
    } else {
        Cipher::from_text(settings.secrets.key.expose())?
    };
    let damaged = |e: &dyn std::fmt::Display| match &dsn {
        MetaDsn::Sqlite(path) if guard::is_corruption(&e.to_string()) => anyhow::anyhow!(
            "the metadata database {} is corrupt ({e}). {}",
            path.display(),
            guard::recovery_steps(path, &settings.data_dir)
        ),
        _ => anyhow::anyhow!("{e}"),
    };
    // Cluster mode: a transaction idle for a lease TTL belongs to a stalled node whose leases
    // have expired anyway; the database ends it, so it cannot hold a lease row locked.
    let tuning = ConnTuning {
        idle_transaction_timeout_sec: (settings.mode == crate::config::Mode::Cluster)
            .then_some(settings.cluster.lease_ttl_sec),
    };
    let store = Store::open_tuned(&dsn, settings.meta_pool_size, crate::clock::system(), tuning)
        .map_err(|e| damaged(&e))?
        .with_cipher(cipher);
    store.check_and_encrypt_secrets().map_err(|e| damaged(&e))?;
    if let MetaDsn::Sqlite(path) = &dsn {
        let known = store.count_by_state().map_err(|e| damaged(&e))?.iter().map(|(_, n)| n).sum();
        guard::check_catalog(path, &settings.data_dir, known)?;
    }
    let watch = match &dsn {
        // Held open for the life of the process (`guard::HeldFile`): the store's connections
        // exist now, and an open and close of the file would drop their locks.
        MetaDsn::Sqlite(path) => match guard::HeldFile::open(path) {
            Ok(held) => Some(MetaWatch { path: path.clone(), data_dir: settings.data_dir.clone(), held }),
            Err(e) => anyhow::bail!("the metadata database {} vanished while it was opened: {e}", path.display()),
        },
        MetaDsn::Mysql(_) => None,
    };
    Ok((store, watch))
}

/// The task directories of `data_dir` whose id is not among `known` (`doctor`'s orphan rule).
fn orphan_task_dirs(known: &[crate::domain::TaskId], data_dir: &std::path::Path) -> Vec<String> {
    crate::doctor::orphan_task_dirs(known, &guard::task_dirs(data_dir)).iter().map(|f| f.task_id.to_string()).collect()
}

/// The SQLite file a running server watches: the one its store opened.
#[derive(Debug, Clone)]
pub struct MetaWatch {
    path: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    held: guard::HeldFile,
}

impl MetaWatch {
    /// Returns the first fault seen (looking every `guard::WATCH_INTERVAL`); never returns
    /// while the file stays the one opened.
    async fn fault(self) -> guard::MetaFileError {
        let mut tick = tokio::time::interval(guard::WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (path, held) = (self.path.clone(), self.held);
            let seen = tokio::task::spawn_blocking(move || held.look(&path))
                .await
                .unwrap_or_else(|e| guard::Seen::Unreadable(e.to_string()));
            if let Err(fault) = guard::judge_running(self.held.id(), &seen) {
                return guard::MetaFileError { path: self.path, data_dir: self.data_dir, fault };
            }
        }
    }
}

/// Runs the service until SIGTERM/SIGINT, then shuts down in order.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let (log, _guard) = logging::init(&settings.log).context("cannot set up logging")?;
    let result = serve(settings, log.clone()).await;
    if let Err(e) = &result {
        error!(log, "binlog-server stopped with an error"; "error" => %format!("{e:#}"));
    }
    result
}

async fn serve(settings: Settings, log: Logger) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        warn!(log, "service manager notifications are off"; "error" => %e);
        Notifier::off()
    });
    let addr = settings.listen_socket_addr().map_err(|e| anyhow::anyhow!(e.message))?;
    let ignored = settings.ignored_upload_keys();
    if !ignored.is_empty() {
        warn!(log, "upload settings are set but upload.enabled is false: they are ignored and no file is \
                    uploaded (set upload.enabled=true, BINLOG_SERVER_UPLOAD_ENABLED=true, to upload)";
              "keys" => ignored.join(", "));
    }
    let tightened = crate::fsmode::prepare(&settings.data_dir)
        .with_context(|| format!("cannot create data_dir {} or make it private", settings.data_dir.display()))?;
    if let Some((first, was)) = tightened.dirs.first().or(tightened.files.first()) {
        warn!(log, "tightened permissions under data_dir: binlogs and the metadata database hold row data and \
                    secrets, readable only by this user from now on (an older version created them with the \
                    umask of its day)";
              "data_dir" => %settings.data_dir.display(), "directories" => tightened.dirs.len(),
              "files" => tightened.files.len(), "example" => format!("{} was {was:o}", first.display()));
    }

    // Held until the process ends: `doctor --repair` refuses to touch a data directory a
    // server is running on, and a server does not start while one repairs it.
    let _data_lock = crate::data_lock::DataDirLock::for_server(&settings.data_dir).map_err(|e| match e {
        crate::data_lock::LockError::Held { .. } => {
            anyhow::anyhow!("{e}: `binlog-server doctor --repair` is changing this data directory; start the server once it has finished")
        }
        e => anyhow::anyhow!(e),
    })?;
    let (store, meta_watch) = {
        let s = settings.clone();
        tokio::task::spawn_blocking(move || open_store(&s)).await.context("metadata start-up")??
    };
    info!(log, "metadata store ready"; "meta" => %store.dsn());
    let orphans = {
        let (s, dir) = (store.clone(), settings.data_dir.clone());
        tokio::task::spawn_blocking(move || s.task_ids().map(|ids| orphan_task_dirs(&ids, &dir)))
            .await
            .context("metadata start-up")??
    };
    if !orphans.is_empty() {
        warn!(log, "the data directory holds task directories the catalog does not know (tasks created after the \
                    backup this metadata database was restored from, or whose delete could not move them); a task \
                    created with such an id moves the folder to .stale first; `binlog-server doctor` lists them, \
                    `doctor --repair` moves them to .stale";
            "task_dirs" => orphans.join(", "), "data_dir" => %settings.data_dir.display());
    }

    let objects = if settings.upload.enabled {
        let o = crate::upload::ObjectStore::new(&settings.upload).map_err(|e| anyhow::anyhow!("upload: {e}"))?;
        info!(log, "upload enabled"; "endpoint" => &settings.upload.endpoint, "bucket" => &settings.upload.bucket);
        let o = Arc::new(o);
        Some(o)
    } else {
        None
    };
    let node_id = crate::cluster::resolve_node_id(&settings.cluster.node_id, &settings.data_dir)
        .with_context(|| format!("cannot read or create the node id in {}", settings.data_dir.display()))?;
    // The API's reads have a pool of their own (see `Store::with_own_pool`).
    let query_store =
        store.with_own_pool(settings.meta_pool_size).context("cannot open the metadata database for reads")?;
    let relay_hub = crate::relay::CheckpointHub::default();
    let relay_clients = crate::relay::clients::Clients::default();
    let supervisor = Supervisor::new(store.clone(), settings.clone(), objects.clone(), log.clone())
        .with_relay(relay_hub.clone())
        .start();
    // The relay listener (off unless relay.listen_addr is set), bound before READY like HTTP.
    let mut relay_cert = None;
    let _relay = match settings.relay.socket_addr().map_err(|e| anyhow::anyhow!(e.message))? {
        Some(relay_addr) => {
            let tls = crate::relay::tls::acceptor(&settings.relay.tls)?;
            let acceptor = tls.map(|(cert, acceptor)| {
                relay_cert = Some(cert);
                acceptor
            });
            let ctx = crate::relay::RelayContext::new(
                store.clone(),
                relay_hub,
                relay_clients.clone(),
                settings.data_dir.clone(),
                &settings.relay,
                log.new(slog::o!("component" => "relay")),
            )
            .with_tls(acceptor)
            .with_objects(objects.clone());
            Some(
                crate::relay::start(relay_addr, ctx)
                    .with_context(|| format!("cannot listen on {relay_addr} (relay)"))?,
            )
        }
        None => None,
    };
    let coordinator = if settings.mode == crate::config::Mode::Cluster {
        let (c, link) = crate::actors::coordinator::start(
            node_id.clone(),
            store,
            settings.clone(),
            supervisor.clone().recipient(),
            &log,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot join the cluster: {e}"))?;
        supervisor.do_send(crate::actors::supervisor::SetCoordinator(link));
        info!(log, "cluster mode: node registered"; "node_id" => &node_id,
              "lease_ttl_sec" => settings.cluster.lease_ttl_sec,
              "lease_renew_interval_sec" => settings.cluster.lease_renew_interval_sec);
        Some(c)
    } else {
        None
    };
    let http_registry = prometheus::Registry::new();
    let prom = actix_web_prom::PrometheusMetricsBuilder::new("binlog_server")
        .registry(http_registry.clone())
        .mask_unmatched_patterns("UNMATCHED")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up HTTP metrics: {e}"))?;
    let state = web::Data::new(ApiState {
        supervisor: supervisor.clone(),
        queries: crate::queries::TaskQueries::new(query_store.clone(), &settings, objects),
        server_id_base: settings.replication.server_id_base,
        alert_after: crate::retry::RetryPolicy::from_settings(&settings.retry).alert_after,
        writer_stall: settings.writer.stall_after(),
        http_registry,
        data_dir: settings.data_dir.clone(),
        relay_clients,
        cluster: api::ClusterInfo {
            node_id: node_id.clone(),
            lease_ttl_sec: settings.cluster.lease_ttl_sec,
            started_at: chrono::Utc::now(),
            clustered: coordinator.is_some(),
        },
        store: query_store,
        rates: std::sync::Mutex::new(crate::overview::RateMeter::new(Duration::from_secs(60))),
        recovery_refreshed: std::sync::Mutex::new(None),
        metrics_text: Default::default(),
        upload_enabled: settings.upload.enabled,
        import_dir: (!settings.storage.import_dir.is_empty()).then(|| settings.storage.import_dir.clone().into()),
        log: log.new(slog::o!("component" => "api")),
    });

    let auth_settings = settings.api.auth.clone();
    let tracing_on = settings.tracing.enabled;
    let rl = &settings.api.rate_limit;
    let limiter = rl.enabled.then(|| api::rate_limit::RateLimiter::new(rl.requests_per_second, rl.burst));
    let fl = &settings.api.auth.failure_limit;
    let failed_auth = fl.enabled.then(|| api::rate_limit::FailedAuthLimiter::new(fl.per_minute, fl.burst));
    if !settings.api_is_protected() && !addr.ip().is_loopback() {
        // Only reachable with allow_insecure_remote (check_exposure refuses it otherwise).
        warn!(log, "THE API IS NOT PROTECTED on a non-loopback address: anyone who can reach this port \
                    controls the tasks. Set api.auth.enabled and api.auth.protect_api (see SECURITY.md)"; "addr" => %addr);
    } else if !(addr.ip().is_loopback() || auth_settings.enabled && auth_settings.protect_metrics) {
        warn!(log, "/metrics answers anyone who can reach this port (api.auth.protect_metrics is false)"; "addr" => %addr);
    }
    let cross_site = Arc::new(api::cross_site::Policy::from_settings(&settings));
    let body_timeout = Duration::from_secs(settings.http.body_timeout_sec);
    let max_body_bytes = settings.http.max_body_bytes as usize;
    let ui_source = api::ui::UiSource::from_dev_dir(&settings.ui.dev_dir);
    if let api::ui::UiSource::Dir(dir) = &ui_source {
        info!(log, "serving the UI from disk (ui.dev_dir)"; "dir" => %dir.display());
    }
    let tls = if settings.api.tls.enabled() {
        let cert = api::tls::ReloadingCert::load(
            api::tls::API_TLS,
            std::path::Path::new(&settings.api.tls.cert_file),
            std::path::Path::new(&settings.api.tls.key_file),
        )?;
        let config = cert.server_config()?;
        Some((cert, config))
    } else {
        None
    };
    let server = HttpServer::new(move || {
        let guards = api::Guards {
            auth: api::auth::Authenticator::from_settings(&auth_settings),
            protect_api: auth_settings.protect_api,
            protect_metrics: auth_settings.protect_metrics,
            rate_limit: limiter.clone(),
            failed_auth: failed_auth.clone(),
            body: api::body::BodyLimits { timeout: body_timeout, max_bytes: max_body_bytes },
            log: state.log.clone(),
        };
        let cross_site = cross_site.clone();
        App::new()
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                api::cross_site::guard(cross_site.clone(), req, next)
            }))
            .wrap(actix_web::middleware::from_fn(api::ui::security_headers))
            .wrap(actix_web::middleware::Condition::new(tracing_on, actix_web::middleware::from_fn(api::trace_request)))
            .wrap(actix_web::middleware::from_fn(api::metrics::fold_unknown_method))
            .wrap(prom.clone())
            .app_data(state.clone())
            .configure(|cfg| api::configure(cfg, guards, &ui_source))
    })
    .disable_signals()
    .shutdown_timeout(2)
    .client_request_timeout(Duration::from_secs(settings.http.request_timeout_sec))
    .keep_alive(match settings.http.keep_alive_sec {
        0 => actix_web::http::KeepAlive::Disabled,
        s => actix_web::http::KeepAlive::Timeout(Duration::from_secs(s)),
    });
    let (server, scheme) = match &tls {
        Some((_, config)) => (server.bind_rustls_0_23(addr, config.clone()), "https"),
        None => (server.bind(addr), "http"),
    };
    let server = server.with_context(|| format!("cannot listen on {addr}"))?.run();
    let handle = server.handle();
    // Registered before READY, so a SIGHUP from then on never meets the default action (exit).
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let reloader = match hup {
        Ok(hup) => tokio::spawn(reload_on_sighup(
            log.clone(),
            hup,
            tls.map(|(cert, _)| cert).into_iter().chain(relay_cert).collect(),
        )),
        Err(e) => {
            error!(log, "cannot listen for SIGHUP: a TLS certificate will not be reloaded"; "error" => %e);
            tokio::spawn(async {})
        }
    };
    info!(log, "listening"; "addr" => %addr, "scheme" => scheme, "data_dir" => %settings.data_dir.display(), "version" => env!("CARGO_PKG_VERSION"));
    // The HTTP server runs on a thread of its own: actix-server stops on the thread that polls
    // it, with blocking waits (its accept thread's join, its workers' replies), and a stop that
    // hangs there must not keep the tasks from flushing, fsyncing and saving their checkpoints.
    let http_thread = actix_rt::Arbiter::new();
    let (http_done_tx, http_done) = tokio::sync::oneshot::channel();
    http_thread.spawn(async move {
        let _ = http_done_tx.send(server.await);
    });
    // The listener is bound and the store open: a service manager may start what depends on us.
    notify(&log, &notifier, |n| n.ready(&format!("listening on {addr}")));

    let meta_fault = tokio::select! {
        _ = wait_for_signal() => None,
        fault = async move {
            match meta_watch {
                Some(w) => w.fault().await,
                None => std::future::pending().await,
            }
        } => Some(fault),
    };
    match &meta_fault {
        // Stopping in order still flushes and fsyncs every open file; checkpoints go to a
        // catalog that is gone, which the recovery steps account for.
        Some(e) => error!(log, "metadata database lost: stopping HTTP, then tasks"; "error" => %e),
        None => info!(log, "shutdown requested: stopping HTTP, then tasks"),
    }
    notify(&log, &notifier, |n| n.stopping("stopping HTTP, then tasks"));
    #[cfg(debug_assertions)]
    test_stall_http_thread(&http_thread).await;
    let http_stopped = tokio::time::timeout(HTTP_STOP_LIMIT, handle.stop(true)).await.is_ok();
    if !http_stopped {
        error!(log, "the HTTP server did not stop in time: stopping the tasks without it";
            "waited_sec" => HTTP_STOP_LIMIT.as_secs());
    }
    reloader.abort();
    if let Some(c) = &coordinator {
        // Claim nothing more while the tasks stop; release their leases once they have.
        let _ = c.send(crate::actors::coordinator::StopPlacing).await;
    }
    let deadline = Duration::from_secs(settings.shutdown_timeout_sec.max(1) + 5);
    match tokio::time::timeout(deadline, supervisor.send(Shutdown)).await {
        Ok(Ok(())) => info!(log, "all tasks stopped"),
        Ok(Err(e)) => warn!(log, "supervisor unavailable during shutdown"; "error" => %e),
        Err(_) => warn!(log, "shutdown deadline passed; exiting with tasks still stopping"),
    }
    if let Some(c) = &coordinator {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.send(crate::actors::coordinator::Leave)).await;
    }
    if http_stopped {
        match tokio::time::timeout(HTTP_STOP_LIMIT, http_done).await {
            Ok(Ok(Err(e))) => warn!(log, "the HTTP server stopped with an error"; "error" => %e),
            Ok(_) => {}
            Err(_) => error!(log, "the HTTP server's thread did not finish; exiting without it"),
        }
    }
    // A thread stuck in the HTTP server's stop is not joined: the process exits without it.
    http_thread.stop();
    if let Some(e) = meta_fault {
        return Err(e.into());
    }
    info!(log, "bye");
    Ok(())
}

/// How long the shutdown waits for the HTTP server to stop (its workers get 2 s for requests in
/// flight) before it stops the tasks without it.
const HTTP_STOP_LIMIT: Duration = Duration::from_secs(10);

/// Debug builds only (never in a release binary): `BINLOG_TEST_HTTP_STOP_STALL=1` blocks the HTTP
/// server's thread when the shutdown begins, as a hang inside the HTTP server's own stop would,
/// so integration tests can show that the tasks still stop in order and the process exits.
#[cfg(debug_assertions)]
async fn test_stall_http_thread(http_thread: &actix_rt::Arbiter) {
    if std::env::var("BINLOG_TEST_HTTP_STOP_STALL").is_ok_and(|v| v == "1") {
        let (stalled_tx, stalled) = tokio::sync::oneshot::channel();
        http_thread.spawn_fn(move || {
            let _ = stalled_tx.send(());
            std::thread::sleep(Duration::from_secs(3600));
        });
        let _ = stalled.await;
    }
}

/// Sends a notification to the service manager; a failure is logged, never fatal.
fn notify(log: &Logger, notifier: &Notifier, send: impl FnOnce(&Notifier) -> Result<(), NotifyError>) {
    if let Err(e) = send(notifier) {
        warn!(log, "cannot notify the service manager"; "error" => %e);
    }
}

/// Reads the listeners' certificates and keys (`api.tls`, `relay.tls`) again on every SIGHUP.
/// Open connections keep the certificate they were made with; a failed reload keeps the current
/// one and says why. Without TLS there is nothing to reload, but SIGHUP (`systemctl reload`)
/// still must not end the process.
async fn reload_on_sighup(log: Logger, mut hup: tokio::signal::unix::Signal, certs: Vec<Arc<api::tls::ReloadingCert>>) {
    while hup.recv().await.is_some() {
        if certs.is_empty() {
            info!(log, "SIGHUP: nothing to reload (neither api.tls nor relay.tls is set)");
        }
        for cert in &certs {
            match cert.reload() {
                Ok(()) => info!(log, "SIGHUP: TLS certificate reloaded"; "cert_file" => %cert.cert_file().display()),
                Err(e) => {
                    error!(log, "SIGHUP: TLS certificate NOT reloaded, the previous one stays in use"; "error" => %e)
                }
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
