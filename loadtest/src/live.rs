//! Live counters of the running load and the progress bar that shows them
//! (requests/s, tokens/s and errors over the last second). The bar draws on
//! stderr and hides itself when stderr is not a terminal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Counters the request tasks bump and the bar reads, and the tokens that
/// arrived inside the measured window (throughput is those over its length,
/// whichever request they belong to).
#[derive(Debug)]
pub struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
    tokens: AtomicU64,
    window_tokens: AtomicU64,
    window_start: Instant,
    /// `None`: open until the run ends (request-count runs).
    window_end: Option<Instant>,
}

impl Live {
    pub fn new(window_start: Instant, window_end: Option<Instant>) -> Live {
        Live {
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            window_tokens: AtomicU64::new(0),
            window_start,
            window_end,
        }
    }

    /// `n` tokens arrived at `at`.
    pub fn tokens(&self, at: Instant, n: u32) {
        self.tokens.fetch_add(u64::from(n), Ordering::Relaxed);
        if at >= self.window_start && self.window_end.is_none_or(|end| at <= end) {
            self.window_tokens
                .fetch_add(u64::from(n), Ordering::Relaxed);
        }
    }

    pub fn finished(&self, ok: bool) {
        let counter = if ok { &self.ok } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every token so far, warm-up included.
    pub fn total_tokens(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }

    /// Tokens that arrived inside the measured window.
    pub fn window_tokens(&self) -> u64 {
        self.window_tokens.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.tokens.load(Ordering::Relaxed),
        )
    }
}

/// A bar over the planned length of one load point; dropped, it clears.
pub struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// `length` is the planned seconds (duration runs) or requests.
    pub fn start(label: &str, live: Arc<Live>, length: Length) -> Progress {
        let (len, template) = match length {
            Length::Seconds(s) => (s.max(1), "{prefix} [{bar:30}] {pos}/{len}s  {msg}"),
            Length::Requests(n) => (n.max(1), "{prefix} [{bar:30}] {pos}/{len} req  {msg}"),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("the template is a constant")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        let ticker = tokio::spawn({
            let bar = bar.clone();
            async move {
                let started = Instant::now();
                let mut last = (Instant::now(), live.snapshot());
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let now = (Instant::now(), live.snapshot());
                    let dt = (now.0 - last.0).as_secs_f64().max(1e-3);
                    let (ok, errors, tokens) = now.1;
                    let rps = (ok + errors - last.1 .0 - last.1 .1) as f64 / dt;
                    let tps = (tokens - last.1 .2) as f64 / dt;
                    bar.set_message(format!(
                        "{rps:.1} req/s  {tps:.1} tok/s  {ok} ok  {errors} errors"
                    ));
                    match length {
                        Length::Seconds(_) => bar.set_position(started.elapsed().as_secs()),
                        Length::Requests(_) => bar.set_position(ok + errors),
                    }
                    last = now;
                }
            }
        });
        Progress { bar, ticker }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Length {
    Seconds(u64),
    Requests(u64),
}
