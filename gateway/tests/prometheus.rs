//! A real Prometheus on loopback scrapes a gateway with two CPU-slice workers
//! every second and evaluates the project's recording rules; after streamed
//! traffic to both, its HTTP API must show each slice's tokens as the client
//! counted them, a non-zero recorded tokens/s per slice, and TTFT quantiles
//! per slice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mig_proto::inference::v1::GenerateRequest;
use serde_json::Value;

/// Stops Prometheus however the test ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Percent-encodes a PromQL query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query; the result vector.
async fn query(prometheus: &str, promql: &str, time: Option<f64>) -> Vec<Value> {
    let mut path = format!("/api/v1/query?query={}", encode(promql));
    if let Some(t) = time {
        path.push_str(&format!("&time={t:.3}"));
    }
    let (code, _, body) = mig_testkit::http::get(prometheus, &path)
        .await
        .expect("Prometheus answers");
    assert_eq!(code, 200, "{promql}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().unwrap().clone()
}

/// `slice label -> (sample time, value)` of a vector result.
fn by_slice(result: &[Value]) -> BTreeMap<String, (f64, f64)> {
    result
        .iter()
        .map(|s| {
            let slice = s["metric"]["slice"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let time = s["value"][0].as_f64().unwrap();
            let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            (slice, (time, value))
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_records_per_slice_tokens_as_the_client_counted_them() {
    let model = mig_testkit::smollm2();
    let a = mig_testkit::gateway::start_worker("smollm2-a", &model, "cpu:0").await;
    let b = mig_testkit::gateway::start_worker("smollm2-b", &model, "cpu:1").await;
    let fleet = format!(
        "[[model]]\nname = \"smollm2-a\"\naddresses = [\"{a}\"]\n\
         [[model]]\nname = \"smollm2-b\"\naddresses = [\"{b}\"]\n"
    );
    let (gateway, metrics) = mig_testkit::gateway::start_gateway_with_metrics(&fleet).await;

    // Prometheus, scraping every second, with the project's recording rules.
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus/rules/mig-recording.yml")
        .canonicalize()
        .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: [\"{metrics}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("prometheus (Debian package `prometheus`) is missing: run `make tools`");
    let _prometheus = Prometheus(child);
    let started = Instant::now();
    while mig_testkit::http::get(&web, "/-/ready")
        .await
        .map(|(c, ..)| c)
        != Some(200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus not ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Both slices' counters scraped at zero before any traffic.
    let started = Instant::now();
    loop {
        let seen = query(
            &web,
            "count_over_time(mig_gateway_generated_tokens_total[1m]) >= 2",
            None,
        )
        .await;
        if seen.len() == 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no scrapes: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Streamed traffic to both models for a few seconds, counted per slice.
    let mut tasks = Vec::new();
    for name in ["smollm2-a", "smollm2-b"] {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = mig_testkit::gateway::gateway_client(&gateway).await;
            let mut counted: BTreeMap<String, f64> = BTreeMap::new();
            let until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < until {
                let request = GenerateRequest {
                    model: name.into(),
                    prompt: "1, 2, 3, 4, 5,".into(),
                    temperature: Some(0.0),
                    max_tokens: Some(24),
                    ..Default::default()
                };
                let mut stream = client.generate_stream(request).await.unwrap().into_inner();
                let (mut tokens, mut slice) = (0.0, String::new());
                while let Some(message) = stream.message().await.unwrap() {
                    tokens += f64::from(message.token_count);
                    // The final message says which slice served the stream.
                    if let Some(served_by) = message.served_by {
                        slice = served_by.slice;
                    }
                }
                assert!(!slice.is_empty(), "no served_by on the stream");
                *counted.entry(slice).or_default() += tokens;
            }
            counted
        }));
    }
    let mut counted: BTreeMap<String, f64> = BTreeMap::new();
    for task in tasks {
        counted.extend(task.await.unwrap());
    }
    assert_eq!(counted.len(), 2, "{counted:?}");
    // Two more scrapes and rule evaluations.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Tokens per slice at the last scrape, and the increase up to that very
    // sample (no extrapolation past it), against the client's count.
    let last = by_slice(&query(&web, "mig_gateway_generated_tokens_total", None).await);
    let scraped_at =
        by_slice(&query(&web, "timestamp(mig_gateway_generated_tokens_total)", None).await);
    for (slice, tokens) in &counted {
        let value = last[slice].1;
        // The scrape's own time: an instant vector's time is the query's.
        let time = scraped_at[slice].1;
        assert_eq!(
            value, *tokens,
            "slice {slice}: Prometheus {value}, client {tokens}"
        );
        let increase = by_slice(
            &query(
                &web,
                &format!(r#"increase(mig_gateway_generated_tokens_total{{slice="{slice}"}}[2m])"#),
                Some(time),
            )
            .await,
        )[slice]
            .1;
        assert!(
            (increase - tokens).abs() <= 0.05 * tokens,
            "slice {slice}: increase {increase}, client {tokens}"
        );
    }
    let rate = by_slice(&query(&web, "slice:mig_tokens:rate1m", None).await);
    for slice in counted.keys() {
        assert!(
            rate[slice].1 > 0.0,
            "recorded tokens/s of {slice}: {rate:?}"
        );
    }
    let ttft = by_slice(&query(&web, "slice:mig_time_to_first_token_seconds:p95_5m", None).await);
    for slice in counted.keys() {
        let p95 = ttft[slice].1;
        assert!(p95 > 0.0 && p95 < 60.0, "TTFT p95 of {slice}: {p95}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
