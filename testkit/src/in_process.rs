//! A worker served inside the test process, on its own `127.0.0.1:0`.

/// A worker with these `mig-worker serve` flags; returns its `http://`
/// address once its model is loaded. It serves until the test process ends.
pub async fn start_worker(flags: &[&str]) -> String {
    use clap::Parser;
    let args =
        mig_worker::ServeArgs::parse_from(std::iter::once("serve").chain(flags.iter().copied()));
    let ready = mig_worker::load(&args).await.expect("worker starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mig_worker::run(ready, listener, std::future::pending()));
    format!("http://{addr}")
}
