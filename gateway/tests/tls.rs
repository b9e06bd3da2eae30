//! TLS on the gateway, with certificates made here at run time: the public
//! listener through `mig-gateway call` and `mig-loadtest` (`--tls-ca`,
//! `MIG_API_KEY`), a certificate reloaded under a running gateway, and the
//! internal listener taking only workers with a client certificate (mTLS);
//! the OpenAI HTTP front as HTTPS with the same certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mig_gateway::tenancy::keys::{new_key, KeyHash};
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::ListModelsRequest;
use mig_testkit::process::{bin, gateway_serve, gateway_up, run_to_end, worker};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const FLEET: &str = "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n";

/// A CA, and certificates it signed, as PEM files in a folder.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `localhost` and 127.0.0.1: (cert, key) files.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// Whether a client trusting `ca` gets the model list over TLS.
async fn lists_with(address: &str, ca: &Path, key: &str) -> Result<Vec<String>, String> {
    let channel = mig_serve::tls::client_endpoint(address, Some(ca))?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut request = tonic::Request::new(ListModelsRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let models = InferenceClient::new(channel)
        .list_models(request)
        .await
        .map_err(|e| format!("{e:?}"))?
        .into_inner()
        .models;
    Ok(models.into_iter().map(|m| m.name).collect())
}

/// `GET /v1/models` over HTTPS (HTTP/1.1, as curl and OpenAI's SDK speak
/// it), trusting `ca`: the status line and body.
async fn https_models(address: &str, ca: &Path, key: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in mig_serve::tls::certificates(ca)? {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let request = format!(
        "GET /v1/models HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

fn call(address: &str, ca: &Path, key: Option<&str>) -> std::process::Output {
    let mut command = Command::new(bin("mig-gateway"));
    command
        .args(["call", "--target", address, "--tls-ca"])
        .arg(ca)
        .args([
            "generate",
            "--model",
            "identity",
            "--prompt",
            "abc",
            "--max-tokens",
            "3",
        ])
        .env_remove("MIG_API_KEY");
    if let Some(key) = key {
        command.env("MIG_API_KEY", key);
    }
    run_to_end(command, Duration::from_secs(60))
}

#[tokio::test]
async fn the_public_listener_speaks_tls_to_real_clients_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::new(dir.path(), "first");
    let (cert, key) = first.issue("server");
    let api_key = new_key();
    let tenants = dir.path().join("tenants.toml");
    std::fs::write(
        &tenants,
        format!(
            "[[tenant]]\nname = \"web\"\nkeys = [\"{}\"]\nmodels = [\"identity\"]\n",
            KeyHash::of(&api_key)
        ),
    )
    .unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let mut gateway = gateway_up(
        "tls",
        FLEET,
        &[
            "--tls-cert",
            &path(&cert),
            "--tls-key",
            &path(&key),
            "--tenants",
            &path(&tenants),
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    assert!(
        gateway.ready_line.ends_with("; TLS"),
        "{}",
        gateway.ready_line
    );
    let address = gateway.address.clone();

    // `mig-gateway call` with the CA and the key from the environment.
    let out = call(&address, &first.ca(), Some(&api_key));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "abc");
    // The key is checked behind TLS as without it.
    let out = call(&address, &first.ca(), None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"),
        "{out:?}"
    );

    // `mig-loadtest` the same way.
    let mut loadtest = Command::new(bin("mig-loadtest"));
    loadtest
        .args(["sweep", "--target", &address, "--model", "identity"])
        .args([
            "--requests",
            "4",
            "--concurrency",
            "2",
            "--max-tokens",
            "4",
            "--tls-ca",
        ])
        .arg(first.ca())
        .env("MIG_API_KEY", &api_key);
    let out = run_to_end(loadtest, Duration::from_secs(120));
    assert!(out.status.success(), "{out:?}");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(&api_key), "the key was printed");

    // Clear text to a TLS port gets nowhere.
    let plain = mig_serve::tls::client_endpoint(&address, None)
        .unwrap()
        .connect()
        .await;
    let plain = match plain {
        Err(e) => format!("{e:?}"),
        Ok(channel) => format!(
            "{:?}",
            InferenceClient::new(channel)
                .list_models(ListModelsRequest {})
                .await
                .unwrap_err()
        ),
    };
    assert!(!plain.contains("identity"), "{plain}");

    // The OpenAI HTTP front is HTTPS with the same certificate and keys;
    // clear HTTP to it gets no answer.
    let https = gateway
        .ready_line
        .split("openai: https://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no HTTPS front in {}", gateway.ready_line))
        .to_string();
    let models = https_models(&https, &first.ca(), &api_key).await.unwrap();
    assert!(models.starts_with("HTTP/1.1 200"), "{models}");
    assert!(models.contains("\"id\":\"identity\""), "{models}");
    let refused = https_models(&https, &first.ca(), "mig_unknown")
        .await
        .unwrap();
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let mut plain_http = tokio::net::TcpStream::connect(&https).await.unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        plain_http
            .write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), plain_http.read_to_end(&mut answer))
            .await;
        assert!(
            !String::from_utf8_lossy(&answer).contains("identity"),
            "clear text was answered"
        );
    }

    // A new certificate from another CA, written over the old one: new
    // connections get it (the files are watched), the old CA no longer
    // verifies them.
    let second = Pki::new(dir.path(), "second");
    let (new_cert, new_key_file) = second.issue("server");
    std::fs::copy(&new_key_file, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let started = Instant::now();
    while lists_with(&address, &second.ca(), &api_key).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lists_with(&address, &second.ca(), &api_key).await.unwrap(),
        ["identity"]
    );
    let old = lists_with(&address, &first.ca(), &api_key)
        .await
        .unwrap_err();
    assert!(old.contains("InvalidCertificate"), "{old}");
    assert!(gateway.log().contains("TLS certificate reloaded"));
    // The HTTP front follows the reload.
    let models = https_models(&https, &second.ca(), &api_key).await.unwrap();
    assert!(models.starts_with("HTTP/1.1 200"), "{models}");
    let old = https_models(&https, &first.ca(), &api_key)
        .await
        .unwrap_err();
    assert!(old.contains("InvalidCertificate"), "{old}");

    // A broken certificate is refused; the one in force stays. (The copy
    // above may have been seen half done, and refused once already.)
    let refusals = || gateway.log().matches("TLS certificate refused").count();
    let before = refusals();
    std::fs::write(&cert, "not a certificate").unwrap();
    let started = Instant::now();
    while refusals() == before {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(lists_with(&address, &second.ca(), &api_key).await.is_ok());
    assert!(!gateway.log().contains(&api_key));
    gateway.terminate();
}

/// The models a gateway lists over TLS, and how many workers each has up.
async fn serving(address: &str, ca: &Path) -> Vec<(String, usize)> {
    let channel = mig_serve::tls::client_endpoint(address, Some(ca))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let models = InferenceClient::new(channel)
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .models;
    models
        .into_iter()
        .map(|m| {
            let up = m.workers.iter().filter(|w| w.health == 1).count();
            (m.name, up)
        })
        .collect()
}

#[tokio::test]
async fn the_internal_listener_takes_only_workers_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "internal");
    let (cert, key) = pki.issue("gateway");
    let (worker_cert, worker_key) = pki.issue("worker");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    // mTLS alone: no registration token.
    let mut gateway = gateway_serve(
        "mtls",
        &[
            "--accept-registrations",
            "--internal-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &path(&cert),
            "--tls-key",
            &path(&key),
            "--internal-client-ca",
            &path(&pki.ca()),
        ],
    );
    let internal = gateway
        .ready_line
        .split("internal: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string();
    let internal_url = format!("https://{internal}");

    // Trusts the gateway, but shows no certificate: the handshake fails,
    // it is never listed.
    let mut rogue = worker(
        "mtls-rogue",
        &[
            "--identity",
            "--model-name",
            "identity-rogue",
            "--slice",
            "cpu:1",
            "--gateway",
            &internal_url,
            "--gateway-tls-ca",
            &path(&pki.ca()),
        ],
    );
    // Shows its certificate: registers, and is served through the gateway.
    let mut good = worker(
        "mtls-good",
        &[
            "--identity",
            "--model-name",
            "identity",
            "--slice",
            "cpu:0",
            "--gateway",
            &internal_url,
            "--gateway-tls-ca",
            &path(&pki.ca()),
            "--gateway-tls-cert",
            &path(&worker_cert),
            "--gateway-tls-key",
            &path(&worker_key),
        ],
    );
    let started = Instant::now();
    while serving(&gateway.address, &pki.ca()).await != [("identity".to_string(), 1)] {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}\n{}",
            gateway.log(),
            good.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = call(&gateway.address, &pki.ca(), None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "abc");
    let started = Instant::now();
    while !rogue.log().contains("heartbeat failed") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            rogue.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        serving(&gateway.address, &pki.ca()).await,
        [("identity".to_string(), 1)],
        "the rogue worker is never listed"
    );
    rogue.terminate();
    good.terminate();
    gateway.terminate();
}
