//! The four scenarios and what they share: a [`Session`] that connects to
//! targets, records their slice inventory, runs load points and files each
//! one's results in the report.
//!
//! - [`compare`]: the same workload on each slice size in turn.
//! - [`isolation`]: a victim alone, then beside an aggressor's flood.
//! - [`sweep`]: a concurrency or rate sweep, on one target or several.
//! - [`overload`]: capacity, unloaded, then a multiple of the capacity.

pub mod compare;
pub mod isolation;
pub mod overload;
pub mod sweep;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::LoadArgs;
use crate::error::LoadtestError;
use crate::report::{Point, Report};
use crate::request::RequestRecord;
use crate::run::{self, Load, RunSpec, Until};
use crate::server_metrics;
use crate::stats::Summary;
use crate::target::{ModelSlices, Target, TargetKind};
use crate::workload::{Prompt, Workload};

pub struct Session {
    pub args: LoadArgs,
    pub report: Report,
    prompts: Vec<Prompt>,
    prompt_source: String,
}

impl Session {
    pub fn new(scenario: &'static str, args: &LoadArgs) -> Result<Session, LoadtestError> {
        let (prompts, prompt_source) = match &args.prompts {
            Some(path) => (Workload::read_prompts(path)?, path.display().to_string()),
            None => (Workload::built_in_prompts(), "built-in".to_string()),
        };
        let until = match args.until() {
            Until::Duration(d) => json!({ "duration_s": d.as_secs_f64() }),
            Until::Requests(n) => json!({ "requests": n }),
            Until::Stopped(_) => json!(null),
        };
        let settings = json!({
            "loads": args.loads(),
            "until": until,
            "warmup_s": args.warmup.as_secs_f64(),
            "timeout_s": args.timeout.as_secs_f64(),
            "drain_s": args.drain.as_secs_f64(),
            "max_in_flight": args.max_in_flight,
            "prompts": prompt_source,
            "prompt_count": prompts.len(),
            "max_tokens": args.max_tokens.to_string(),
            "input_words": args.input_words.map(|d| d.to_string()),
            "ignore_eos": args.ignore_eos,
            "temperature": args.temperature,
            "seed": args.seed,
            "metrics_url": args.metrics_url,
        });
        Ok(Session {
            args: args.clone(),
            report: Report::new(scenario, settings),
            prompts,
            prompt_source,
        })
    }

    /// Connects to `address` and records what it serves.
    pub async fn connect(
        &mut self,
        address: &str,
        kind: TargetKind,
    ) -> Result<Target, LoadtestError> {
        let target = Target::connect(address, kind, self.args.credentials()?).await?;
        let inventory = target.inventory().await?;
        self.report.inventory.push(inventory);
        Ok(target)
    }

    /// The model as the target at `inventory` index `at` serves it; it must
    /// generate text and have a healthy worker.
    pub fn model(&self, at: usize, name: &str) -> Result<ModelSlices, LoadtestError> {
        let inventory = &self.report.inventory[at];
        let model = inventory.model(name)?;
        if model.kind != "generate" {
            return Err(LoadtestError::NotGenerate {
                model: name.to_string(),
                kind: model.kind.clone(),
            });
        }
        let max_tokens = self.args.max_tokens.max();
        if model.context_length > 0 && max_tokens >= model.context_length {
            return Err(LoadtestError::Usage(format!(
                "`--max-tokens` {} does not fit `{name}`'s context of {} tokens (prompt included)",
                self.args.max_tokens, model.context_length
            )));
        }
        if !model.workers.iter().any(|w| w.healthy) {
            return Err(LoadtestError::NoHealthyWorker {
                model: name.to_string(),
                target: inventory.target.clone(),
            });
        }
        Ok(model.clone())
    }

    pub fn workload(&self, model: &str, profile: Option<String>) -> Arc<Workload> {
        Arc::new(Workload {
            model: model.to_string(),
            profile,
            prompts: self.prompts.clone(),
            prompt_source: self.prompt_source.clone(),
            input_words: self.args.input_words,
            output_tokens: self.args.max_tokens,
            ignore_eos: self.args.ignore_eos,
            temperature: self.args.temperature,
            seed: self.args.seed,
        })
    }

    pub fn spec(&self, load: Load, until: Until) -> RunSpec {
        RunSpec {
            load,
            until,
            warmup: self.args.warmup,
            drain: self.args.drain,
            timeout: self.args.timeout,
            max_in_flight: self.args.max_in_flight,
            seed: self.args.seed,
        }
    }

    /// Runs one load point and files its results; returns its index in
    /// `report.points`.
    pub async fn measure(
        &mut self,
        target: &Target,
        workload: &Arc<Workload>,
        load: Load,
        group: &str,
    ) -> Result<usize, LoadtestError> {
        let until = self.args.until();
        let spec = self.spec(load, until.clone());
        let label = format!("{group} {load}");
        // The server's counters read at the window's edges, so its figure
        // covers the same time as the client's.
        let scrape_at = |delay: Duration, url: String| {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                server_metrics::tokens_by_slice(&url)
                    .await
                    .map(|tokens| (tokens, Instant::now()))
            })
        };
        let scrapes = self.args.metrics_url.clone().map(|url| {
            let before = scrape_at(spec.warmup, url.clone());
            let after = match until {
                Until::Duration(d) => Some(scrape_at(spec.warmup + d, url.clone())),
                _ => None,
            };
            (url, before, after)
        });
        let outcome = run::run(target, workload, &spec, &label).await;
        let server = match scrapes {
            Some((url, before, after)) => {
                let after = match after {
                    Some(task) => task.await,
                    None => scrape_at(Duration::ZERO, url).await,
                };
                let joined = |r: Result<_, tokio::task::JoinError>| {
                    r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                };
                match (joined(before.await), joined(after)) {
                    (Ok((before, t0)), Ok((after, t1))) => {
                        Some(server_metrics::rate(&before, &after, t1 - t0))
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        self.report
                            .notes
                            .push(format!("{label}: no server-side figure: {e}"));
                        None
                    }
                }
            }
            None => None,
        };
        let summary = Summary::of(&outcome);
        eprintln!(
            "{label}: {} requests, {:.1} tok/s, TTFT p50 {} ms, ITL p50 {} ms, errors {}",
            summary.requests,
            summary.output_tokens_per_s,
            crate::report::table::ms(summary.ttft.p50),
            crate::report::table::ms(summary.itl.p50),
            summary.errors_text()
        );
        let point = Point {
            id: 0,
            target: target.address.clone(),
            model: workload.model.clone(),
            group: group.to_string(),
            load,
            summary,
            server_tokens_per_s: server,
        };
        Ok(self.file(point, outcome.records, true))
    }

    /// Files a point (measured here or by a scenario: an aggressor's
    /// flood) with its requests; `note_errors` adds a note when some failed.
    pub fn file(
        &mut self,
        mut point: Point,
        records: Vec<RequestRecord>,
        note_errors: bool,
    ) -> usize {
        let id = self.report.points.len();
        point.id = id;
        let s = &point.summary;
        if note_errors && s.error_count() > 0 {
            self.report.notes.push(format!(
                "point {id} ({} {}): {} of {} requests failed: {}",
                point.group,
                point.load,
                s.error_count(),
                s.requests,
                s.errors_text()
            ));
        }
        if s.skipped > 0 {
            self.report.notes.push(format!(
                "point {id} ({} {}): {} arrivals were not sent because `--max-in-flight` \
                 requests were running: the target could not keep up with this rate",
                point.group, point.load, s.skipped
            ));
        }
        self.report.points.push(point);
        self.report.records.extend(
            records
                .into_iter()
                .map(|r| RequestRecord { point: id, ..r }),
        );
        id
    }
}
