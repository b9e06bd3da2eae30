//! Tenants through a real `mig-gateway up` and its workers: keys, model
//! allow-lists, concurrency and token quotas, per-tenant metrics, and a
//! reload of the tenants file with a stream in flight. Every refusal is
//! checked unary and streamed, for its code and for a message that names
//! the field or the limit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mig_gateway::tenancy::keys::{new_key, KeyHash};
use mig_proto::inference::v1::inference_client::InferenceClient;
use mig_proto::inference::v1::{EmbedRequest, GenerateRequest, ListModelsRequest};
use mig_testkit::process::{bin, gateway_up, run_to_end, Process};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// Two echo models on their own cores: `identity` and `identity-private`.
const FLEET: &str = "[[model]]\nname = \"identity\"\nidentity = true\nslices = [\"cpu:0\"]\n\n\
                     [[model]]\nname = \"identity-private\"\nidentity = true\nslices = [\"cpu:1\"]\n";

struct Keys {
    /// `alpha`: `identity` (and `ghost`, served nowhere), 2 at once.
    alpha: String,
    /// `beta`: `identity*`, no limit.
    beta: String,
    /// `gamma`: `identity`, 60 tokens a minute.
    gamma: String,
}

fn tenants_file(keys: &Keys) -> String {
    format!(
        "# test tenants\n\
         [[tenant]]\nname = \"alpha\"\nkeys = [\"{}\"]\nmodels = [\"identity\", \"ghost\"]\nmax_concurrency = 2\n\n\
         [[tenant]]\nname = \"beta\"\nkeys = [\"{}\"]\nmodels = [\"identity*\"]\npriority = \"sheddable\"\nadmin = true\n\n\
         [[tenant]]\nname = \"gamma\"\nkeys = [\"{}\"]\nmodels = [\"identity\"]\ntokens_per_minute = 60\n",
        KeyHash::of(&keys.alpha),
        KeyHash::of(&keys.beta),
        KeyHash::of(&keys.gamma)
    )
}

fn keys() -> Keys {
    Keys {
        alpha: new_key(),
        beta: new_key(),
        gamma: new_key(),
    }
}

/// A gateway with `FLEET`, this tenants file and `/metrics`.
fn start(name: &str, tenants: &str) -> (Process, PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "mig-test-tenants-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, tenants).unwrap();
    let gateway = gateway_up(
        name,
        FLEET,
        &[
            "--tenants",
            path.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    (gateway, path)
}

/// A client whose receive window is small, so a stream it does not read
/// stays open (in flight at the gateway) instead of finishing into buffers.
async fn client(addr: &str) -> InferenceClient<Channel> {
    let channel = Endpoint::from_shared(addr.to_string())
        .unwrap()
        .initial_stream_window_size(1024)
        .connect()
        .await
        .unwrap();
    InferenceClient::new(channel)
}

fn keyed<T>(message: T, key: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

fn generate(model: &str, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        model: model.into(),
        prompt: "abc".into(),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

/// The unary and the streamed call both fail with `code`, with a message
/// holding every one of `words`; returns the streamed status.
async fn refused_both_ways(
    client: &mut InferenceClient<Channel>,
    request: GenerateRequest,
    key: Option<&str>,
    code: Code,
    words: &[&str],
) -> Status {
    let unary = client
        .generate(keyed(request.clone(), key))
        .await
        .unwrap_err();
    let streamed = match client.generate_stream(keyed(request, key)).await {
        Err(status) => status,
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the stream ended without a status"),
                    Err(status) => break status,
                }
            }
        }
    };
    for status in [&unary, &streamed] {
        assert_eq!(status.code(), code, "{status:?}");
        for word in words {
            assert!(status.message().contains(word), "{word:?} in {status:?}");
        }
    }
    streamed
}

fn retry_after(status: &Status) -> u64 {
    status
        .metadata()
        .get("retry-after")
        .unwrap_or_else(|| panic!("no retry-after in {status:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn metrics_addr(gateway: &Process) -> std::net::SocketAddr {
    gateway.address_after("metrics: http://").parse().unwrap()
}

/// The value of one exact series.
fn series(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series} in\n{exposition}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn keys_decide_who_calls_what_and_what_each_tenant_sees() {
    let keys = keys();
    let (mut gateway, _file) = start("keys", &tenants_file(&keys));
    assert!(
        !gateway.log().contains("the gateway is open"),
        "{}",
        gateway.log()
    );
    let addr = gateway.url();
    let mut c = client(&addr).await;

    // No key, a malformed header, an unknown key: UNAUTHENTICATED, naming
    // the metadata, never echoing what was sent.
    refused_both_ways(
        &mut c,
        generate("identity", 3),
        None,
        Code::Unauthenticated,
        &["`authorization`", "Bearer"],
    )
    .await;
    let mut basic = Request::new(generate("identity", 3));
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let e = c.generate(basic).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("must be `Bearer <API key>`"), "{e:?}");
    let stranger = new_key();
    let e = refused_both_ways(
        &mut c,
        generate("identity", 3),
        Some(&stranger),
        Code::Unauthenticated,
        &["not known"],
    )
    .await;
    assert!(!e.message().contains(&stranger));
    let e = c
        .list_models(keyed(ListModelsRequest {}, None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = c
        .embed(keyed(
            EmbedRequest {
                model: "identity".into(),
                inputs: vec!["x".into()],
                ..Default::default()
            },
            Some(&"k".repeat(10_000)),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().len() < 100, "{e:?}");

    // A model outside the tenant's list: PERMISSION_DENIED, the same
    // whether it is served here or not.
    for model in ["identity-private", "llama-70b"] {
        refused_both_ways(
            &mut c,
            generate(model, 3),
            Some(&keys.alpha),
            Code::PermissionDenied,
            &[
                "tenant `alpha` may not call model",
                model,
                "identity, ghost",
            ],
        )
        .await;
    }
    // Allowed but served nowhere: NOT_FOUND listing only its own models.
    let e = refused_both_ways(
        &mut c,
        generate("ghost", 3),
        Some(&keys.alpha),
        Code::NotFound,
        &["model `ghost` is not served here; known models: identity"],
    )
    .await;
    assert!(!e.message().contains("identity-private"), "{e:?}");

    // Each tenant sees its own models only.
    let listed = |key: &str| {
        let mut c = c.clone();
        let request = keyed(ListModelsRequest {}, Some(key));
        async move {
            let models = c.list_models(request).await.unwrap().into_inner().models;
            models.into_iter().map(|m| m.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(&keys.alpha).await, ["identity"]);
    assert_eq!(listed(&keys.beta).await, ["identity", "identity-private"]);
    // Workers' internal addresses: to the admin tenant only.
    let addresses = |key: &str| {
        let mut c = c.clone();
        let request = keyed(ListModelsRequest {}, Some(key));
        async move {
            let models = c.list_models(request).await.unwrap().into_inner().models;
            models[0].workers[0].address.clone()
        }
    };
    assert_eq!(addresses(&keys.alpha).await, "");
    assert!(addresses(&keys.beta).await.starts_with("http://127.0.0.1:"));

    // And the right key is served, unary and streamed.
    let answer = c
        .generate(keyed(generate("identity-private", 5), Some(&keys.beta)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.text, "abcab");
    let mut stream = c
        .generate_stream(keyed(generate("identity", 4), Some(&keys.alpha)))
        .await
        .unwrap()
        .into_inner();
    let mut text = String::new();
    while let Some(m) = stream.message().await.unwrap() {
        text.push_str(&m.text);
    }
    assert_eq!(text, "abca");

    // Per-tenant series: requests by final code, tokens, rejections by
    // reason; unknown keys fold into one label.
    let exposition = mig_testkit::http::scrape(metrics_addr(&gateway)).await;
    for line in [
        "mig_gateway_tenant_requests_total{tenant=\"beta\",model=\"identity-private\",code=\"OK\"} 1",
        "mig_gateway_tenant_requests_total{tenant=\"alpha\",model=\"identity\",code=\"OK\"} 1",
        "mig_gateway_tenant_requests_total{tenant=\"alpha\",model=\"identity-private\",code=\"PERMISSION_DENIED\"} 2",
        "mig_gateway_tenant_requests_total{tenant=\"alpha\",model=\"_unknown\",code=\"PERMISSION_DENIED\"} 2",
        "mig_gateway_tenant_requests_total{tenant=\"alpha\",model=\"_unknown\",code=\"NOT_FOUND\"} 2",
        "mig_gateway_tenant_rejections_total{tenant=\"alpha\",reason=\"permission\"} 4",
        "mig_gateway_tenant_rejections_total{tenant=\"_unknown\",reason=\"unauthenticated\"} 7",
        "mig_gateway_tenant_generated_tokens_total{tenant=\"beta\"} 5",
    ] {
        assert!(exposition.contains(line), "{line} in\n{exposition}");
    }
    let prompt = series(
        &exposition,
        "mig_gateway_tenant_prompt_tokens_total{tenant=\"alpha\"}",
    );
    assert!(prompt >= 3.0, "{prompt}");
    mig_testkit::promtool::check_metrics(&exposition);
    gateway.terminate();
}

#[tokio::test]
async fn a_tenant_over_its_limits_is_refused_while_another_is_served() {
    let keys = keys();
    let (mut gateway, _file) = start("quota", &tenants_file(&keys));
    let addr = gateway.url();
    let mut c = client(&addr).await;

    // alpha holds two streams it does not read: they stay in flight.
    let long = generate("identity", 4000);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = c
            .generate_stream(keyed(long.clone(), Some(&keys.alpha)))
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().unwrap();
        held.push(stream);
    }
    let third = refused_both_ways(
        &mut c,
        generate("identity", 3),
        Some(&keys.alpha),
        Code::ResourceExhausted,
        &["tenant `alpha`", "`max_concurrency`"],
    )
    .await;
    assert!(retry_after(&third) >= 1);
    // beta, meanwhile, is served on the same model.
    let answer = c
        .generate(keyed(generate("identity", 3), Some(&keys.beta)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.text, "abc");
    // One stream ends: alpha is served again.
    drop(held.pop());
    let started = Instant::now();
    loop {
        match c
            .generate(keyed(generate("identity", 3), Some(&keys.alpha)))
            .await
        {
            Ok(answer) => break assert_eq!(answer.into_inner().text, "abc"),
            Err(e) if e.code() == Code::ResourceExhausted => {
                assert!(started.elapsed() < Duration::from_secs(10), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }

    // gamma's 60 tokens a minute: a stream of 200 is cut once they are
    // spent (3 prompt + 57 generated), with the limit named, not stopped
    // silently.
    let streaming = Instant::now();
    let mut stream = c
        .generate_stream(keyed(generate("identity", 200), Some(&keys.gamma)))
        .await
        .unwrap()
        .into_inner();
    let mut generated = 0;
    let cut = loop {
        match stream.message().await {
            Ok(Some(m)) => {
                assert_eq!(m.finish_reason, 0, "it must not finish: {m:?}");
                generated += m.token_count;
            }
            Ok(None) => panic!("a silent stop after {generated} tokens"),
            Err(status) => break status,
        }
    };
    assert_eq!(cut.code(), Code::ResourceExhausted, "{cut:?}");
    assert!(
        cut.message().contains("`tokens_per_minute` limit (60)")
            && cut.message().contains("cut after"),
        "{cut:?}"
    );
    // The bucket refills at one token a second while the stream runs.
    let refilled = streaming.elapsed().as_secs() as u32 + 1;
    assert!(
        (50..=60 + refilled).contains(&generated),
        "{generated} in {:?}",
        streaming.elapsed()
    );
    assert!(retry_after(&cut) >= 1);
    // Spent: the next calls are refused at admission, unary and streamed.
    let refused = refused_both_ways(
        &mut c,
        generate("identity", 3),
        Some(&keys.gamma),
        Code::ResourceExhausted,
        &["tenant `gamma`", "`tokens_per_minute`"],
    )
    .await;
    assert!((1..=60).contains(&retry_after(&refused)), "{refused:?}");

    let exposition = mig_testkit::http::scrape(metrics_addr(&gateway)).await;
    // The cut stream never sent its final usage: its prompt was paid when
    // the worker took it (the worker's `mig-prompt-tokens` header).
    let prompt = series(
        &exposition,
        "mig_gateway_tenant_prompt_tokens_total{tenant=\"gamma\"}",
    );
    assert!(prompt >= 3.0, "{prompt}");
    // At least the two above (the wait for a free slot may add more).
    let concurrency = series(
        &exposition,
        "mig_gateway_tenant_rejections_total{tenant=\"alpha\",reason=\"quota_concurrency\"}",
    );
    assert!(concurrency >= 2.0, "{concurrency}");
    for line in [
        "mig_gateway_tenant_rejections_total{tenant=\"gamma\",reason=\"quota_tokens\"} 2",
        "mig_gateway_tenant_requests_total{tenant=\"gamma\",model=\"identity\",code=\"RESOURCE_EXHAUSTED\"} 3",
    ] {
        assert!(exposition.contains(line), "{line} in\n{exposition}");
    }
    drop(held);
    gateway.terminate();
}

/// `mig-gateway tenant add-key`: the key it prints.
fn add_key(file: &Path, tenant: &str) -> String {
    let mut command = std::process::Command::new(bin("mig-gateway"));
    command
        .args(["tenant", "add-key", "--tenant", tenant, "--tenants"])
        .arg(file);
    let out = run_to_end(command, Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shown this once"),
        "{out:?}"
    );
    key
}

/// Polls until `key` gets `code` (or is served, for `Code::Ok`).
async fn until_key(c: &mut InferenceClient<Channel>, key: &str, code: Code) {
    let started = Instant::now();
    loop {
        let got = match c.generate(keyed(generate("identity", 2), Some(key))).await {
            Ok(_) => Code::Ok,
            Err(e) => e.code(),
        };
        if got == code {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still {got:?}, not {code:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_tenants_file_reloads_under_a_running_stream_and_a_bad_one_is_refused() {
    let keys = keys();
    let (mut gateway, file) = start("reload", &tenants_file(&keys));
    let addr = gateway.url();
    let mut c = client(&addr).await;
    let mut running = c
        .generate_stream(keyed(generate("identity", 2000), Some(&keys.alpha)))
        .await
        .unwrap()
        .into_inner();
    let mut generated = running.message().await.unwrap().unwrap().token_count;

    // A new key, through the command, while the gateway runs: picked up
    // when the file changes.
    let fresh = add_key(&file, "beta");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&fresh) && text.contains("# test tenants"));
    until_key(&mut c, &fresh, Code::Ok).await;

    // alpha's key taken out, then SIGHUP: new calls with it are refused,
    // its running stream is not touched.
    std::fs::write(
        &file,
        text.replace(&format!("\"{}\"", KeyHash::of(&keys.alpha)), ""),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    until_key(&mut c, &keys.alpha, Code::Unauthenticated).await;

    // A broken file: refused with its line and field; the tenants in force stay.
    std::fs::write(
        &file,
        "[[tenant]]\nname = \"beta\"\nmodels = [\"identity\"]\nmax_concurrency = 0\n",
    )
    .unwrap();
    let started = Instant::now();
    while !gateway.log().contains("tenants file refused") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gateway
            .log()
            .contains("line 4: `max_concurrency` must be at least 1"),
        "{}",
        gateway.log()
    );
    until_key(&mut c, &fresh, Code::Ok).await;

    // The stream that ran through all of it ends whole.
    let last = loop {
        let m = running.message().await.unwrap().expect("a final message");
        generated += m.token_count;
        if m.finish_reason != 0 {
            break m;
        }
    };
    assert_eq!(last.usage.unwrap().completion_tokens, 2000);
    assert_eq!(generated, 2000);
    // Keys never reach the log.
    let log = gateway.log();
    for key in [&keys.alpha, &keys.beta, &fresh] {
        assert!(!log.contains(key.as_str()), "a key in the log");
    }
    gateway.terminate();
}
