//! An HTTP check ignores the proxy settings of the environment: its requests go to the Service
//! itself, never through a proxy that `HTTP_PROXY` names (reqwest follows it by default).
//!
//! A binary of its own with a single test, because it sets environment variables, which is
//! only sound while no other thread reads them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry::adapters::http_check::Target;
use ferry::adapters::runs::Runs;

#[test]
fn a_check_ignores_the_proxy_named_in_the_environment() {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("an address"));
    // SAFETY: this binary's only test, run before any runtime or other thread of ours exists.
    unsafe {
        for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            std::env::set_var(name, &proxy_url);
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        proxy
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let proxy = tokio::net::TcpListener::from_std(proxy).expect("a tokio listener");
        let proxied = Arc::new(AtomicU64::new(0));
        let counter = proxied.clone();
        // The "proxy" only counts connections; a request sent to it gets no answer.
        tokio::spawn(async move {
            while let Ok((_connection, _)) = proxy.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let service = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = service.local_addr().expect("an address").port();
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(service, app).await });

        let checks = Runs::<&str>::default();
        let target = Target::new(
            "127.0.0.1",
            port,
            "/healthz",
            Duration::from_millis(50),
            Duration::from_secs(5),
        )
        .expect("a valid target");
        checks.ensure_check("proxied", target);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let figures = checks.figures(&"proxied");
            if figures.as_ref().is_some_and(|f| f.requests >= 3) {
                assert_eq!(figures.map(|f| f.failed), Some(0));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "waited 30s for 3 requests of the check; figures: {figures:?}, \
                 connections to the proxy: {}",
                proxied.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            proxied.load(Ordering::SeqCst),
            0,
            "a request went through the proxy"
        );
    });
}
