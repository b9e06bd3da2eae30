//! Each tenant's limits, held: requests running at once, and tokens per
//! minute as a bucket that refills evenly (a full minute's worth at most).
//!
//! A request is admitted while the tenant is under its concurrency limit and
//! its bucket is above zero; it then pays for what it actually uses: its
//! prompt tokens when a worker took it, its generated tokens as they stream.
//! A stream that empties the bucket is cut there with `RESOURCE_EXHAUSTED`.
//! Use is kept by tenant name, so a reload of the tenants file (new limits,
//! new keys) keeps what running requests hold and what was spent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mig_proto::inference::v1::GenerateStreamResponse;

use super::file::Tenant;
use crate::metrics::{GatewayMetrics, TENANT_GENERATED_TOKENS, TENANT_PROMPT_TOKENS};

/// Which limit refused a request or cut its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// `max_concurrency`: requests running at once.
    Concurrency { max: u32 },
    /// `tokens_per_minute`: prompt and generated tokens.
    Tokens { per_minute: u64 },
}

/// A request refused (or a stream cut) by a tenant's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub tenant: String,
    pub limit: Limit,
    /// When trying again may succeed (whole seconds, at least 1).
    pub retry_after: Duration,
    /// Generated tokens the cut stream had delivered; `None` at admission.
    pub cut_after: Option<u64>,
}

impl OverLimit {
    /// The `reason` label of the rejection counter.
    pub fn reason(&self) -> &'static str {
        match self.limit {
            Limit::Concurrency { .. } => "quota_concurrency",
            Limit::Tokens { .. } => "quota_tokens",
        }
    }
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenant = &self.tenant;
        let retry = self.retry_after.as_secs();
        match (&self.limit, self.cut_after) {
            (Limit::Concurrency { max }, _) => write!(
                f,
                "tenant `{tenant}` has {max} requests running, its `max_concurrency` limit; retry after {retry} s"
            ),
            (Limit::Tokens { per_minute }, None) => write!(
                f,
                "tenant `{tenant}` has used its `tokens_per_minute` limit ({per_minute}); retry after {retry} s"
            ),
            (Limit::Tokens { per_minute }, Some(tokens)) => write!(
                f,
                "tenant `{tenant}` used up its `tokens_per_minute` limit ({per_minute}) during this request: cut after {tokens} generated tokens; retry after {retry} s"
            ),
        }
    }
}

/// A tenant's use, across reloads.
#[derive(Debug)]
struct Use {
    running: AtomicU32,
    bucket: Mutex<Bucket>,
}

/// Tokens left this minute; below zero when a request overspent.
#[derive(Debug)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    /// Refills for the time passed, up to a minute's worth.
    fn refill(&mut self, per_minute: u64, now: Instant) {
        let rate = per_minute as f64 / 60.0;
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + passed * rate).min(per_minute as f64);
        self.at = now;
    }

    /// How long until the level is above zero again.
    fn wait(&self, per_minute: u64) -> Duration {
        let rate = per_minute as f64 / 60.0;
        let secs = ((1.0 - self.level) / rate).ceil().max(1.0);
        Duration::from_secs(secs as u64)
    }
}

/// Every tenant's use, by name.
#[derive(Debug, Default)]
pub struct Quotas {
    by_tenant: Mutex<HashMap<String, Arc<Use>>>,
}

impl Quotas {
    fn of(&self, tenant: &str) -> Arc<Use> {
        let mut map = self.by_tenant.lock().expect("quota map");
        map.entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(Use {
                    running: AtomicU32::new(0),
                    bucket: Mutex::new(Bucket {
                        level: f64::INFINITY,
                        at: Instant::now(),
                    }),
                })
            })
            .clone()
    }

    /// Admits a request of `tenant` under its limits as they are now.
    pub fn admit(
        &self,
        tenant: &Arc<Tenant>,
        metrics: &GatewayMetrics,
    ) -> Result<Admitted, OverLimit> {
        let usage = self.of(&tenant.name);
        let over = |limit, retry_after| OverLimit {
            tenant: tenant.name.clone(),
            limit,
            retry_after,
            cut_after: None,
        };
        if let Some(per_minute) = tenant.tokens_per_minute {
            let mut bucket = usage.bucket.lock().expect("bucket");
            bucket.refill(per_minute, Instant::now());
            if bucket.level <= 0.0 {
                return Err(over(Limit::Tokens { per_minute }, bucket.wait(per_minute)));
            }
        }
        if let Some(max) = tenant.max_concurrency {
            let taken = usage
                .running
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_err() {
                return Err(over(Limit::Concurrency { max }, Duration::from_secs(1)));
            }
        } else {
            usage.running.fetch_add(1, Ordering::AcqRel);
        }
        let mut admitted = Admitted::counting(metrics, &tenant.name);
        admitted.account = Some((tenant.clone(), usage));
        Ok(admitted)
    }
}

/// An admitted request: it holds its tenant's concurrency slot until
/// dropped, and pays for its tokens through [`Admitted::charge`].
pub struct Admitted {
    account: Option<(Arc<Tenant>, Arc<Use>)>,
    prompt_tokens: metrics::Counter,
    generated_tokens: metrics::Counter,
    generated: u64,
    prompt_paid: bool,
}

impl Admitted {
    /// A request of the open gateway (no tenants file): counted under
    /// `tenant`, limited by nothing.
    pub fn counting(metrics: &GatewayMetrics, tenant: &str) -> Admitted {
        let label = [("tenant", tenant)];
        Admitted {
            account: None,
            prompt_tokens: metrics.counter_with(TENANT_PROMPT_TOKENS, &label),
            generated_tokens: metrics.counter_with(TENANT_GENERATED_TOKENS, &label),
            generated: 0,
            prompt_paid: false,
        }
    }

    /// Pays for the prompt, when a worker took the request and said its
    /// length (the `mig-prompt-tokens` header).
    pub fn pay_prompt(&mut self, prompt_tokens: u32) -> Result<(), OverLimit> {
        self.prompt_paid = true;
        self.charge(prompt_tokens, 0)
    }

    /// Pays for a relayed message's tokens (and for the prompt, from the
    /// final usage, if the worker did not say it up front).
    pub fn pay_message(&mut self, message: &GenerateStreamResponse) -> Result<(), OverLimit> {
        let prompt = match (&message.usage, self.prompt_paid) {
            (Some(usage), false) => {
                self.prompt_paid = true;
                usage.prompt_tokens
            }
            _ => 0,
        };
        self.charge(prompt, message.token_count)
    }

    /// Pays for tokens used. `Err` once the tenant's bucket is empty: the
    /// caller ends the request there, with [`OverLimit`]'s status.
    pub fn charge(&mut self, prompt: u32, generated: u32) -> Result<(), OverLimit> {
        self.prompt_tokens.increment(prompt.into());
        self.generated_tokens.increment(generated.into());
        self.generated += u64::from(generated);
        let Some((tenant, usage)) = &self.account else {
            return Ok(());
        };
        let Some(per_minute) = tenant.tokens_per_minute else {
            return Ok(());
        };
        let mut bucket = usage.bucket.lock().expect("bucket");
        bucket.refill(per_minute, Instant::now());
        bucket.level -= f64::from(prompt) + f64::from(generated);
        if bucket.level > 0.0 {
            return Ok(());
        }
        Err(OverLimit {
            tenant: tenant.name.clone(),
            limit: Limit::Tokens { per_minute },
            retry_after: bucket.wait(per_minute),
            cut_after: Some(self.generated),
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((_, usage)) = &self.account {
            usage.running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::file::Tenants;

    fn tenant(limits: &str) -> Arc<Tenant> {
        let key = crate::tenancy::keys::new_key();
        let text = format!(
            "[[tenant]]\nname = \"t\"\nmodels = [\"*\"]\nkeys = [\"{}\"]\n{limits}\n",
            crate::tenancy::keys::KeyHash::of(&key)
        );
        Tenants::parse(&text).unwrap().find(&key).unwrap().clone()
    }

    #[test]
    fn concurrency_is_held_until_the_request_ends() {
        let metrics = GatewayMetrics::new();
        let quotas = Quotas::default();
        let t = tenant("max_concurrency = 2");
        let a = quotas.admit(&t, &metrics).unwrap();
        let _b = quotas.admit(&t, &metrics).unwrap();
        let over = quotas.admit(&t, &metrics).err().unwrap();
        assert_eq!(over.limit, Limit::Concurrency { max: 2 });
        assert_eq!(over.reason(), "quota_concurrency");
        assert!(over.to_string().contains("`max_concurrency`"), "{over}");
        drop(a);
        assert!(quotas.admit(&t, &metrics).is_ok());
    }

    #[test]
    fn tokens_are_paid_as_used_and_an_empty_bucket_cuts_and_refuses() {
        let metrics = GatewayMetrics::new();
        let quotas = Quotas::default();
        let t = tenant("tokens_per_minute = 60");
        let mut first = quotas.admit(&t, &metrics).unwrap();
        first.charge(50, 0).unwrap();
        first.charge(0, 5).unwrap();
        // 60 - 50 - 5 - 6 < 0, whatever trickled in since.
        let cut = first.charge(0, 6).unwrap_err();
        assert_eq!(cut.cut_after, Some(11));
        assert!(
            cut.to_string().contains("cut after 11 generated tokens"),
            "{cut}"
        );
        drop(first);
        let refused = quotas.admit(&t, &metrics).err().unwrap();
        assert_eq!(refused.limit, Limit::Tokens { per_minute: 60 });
        // One token a second refills: above zero again within 1-2 s.
        assert!(refused.retry_after <= Duration::from_secs(2), "{refused:?}");
        assert!(refused
            .to_string()
            .contains("`tokens_per_minute` limit (60)"));
    }
}
