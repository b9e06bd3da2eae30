//! What each request asks: prompts (built in or from a JSONL file), input
//! and output lengths drawn from distributions, and the sampling settings.
//! Request `i` of a run is a pure function of the seed and `i`, so two runs
//! with the same seed send the same requests.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use mig_proto::inference::v1::{ChatMessage, GenerateRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::LoadtestError;

/// A length: fixed (`64`) or uniform over an inclusive range (`32-128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dist {
    Fixed(u32),
    Uniform(u32, u32),
}

impl Dist {
    fn sample(self, rng: &mut impl Rng) -> u32 {
        match self {
            Dist::Fixed(n) => n,
            Dist::Uniform(lo, hi) => rng.random_range(lo..=hi),
        }
    }

    pub fn max(self) -> u32 {
        match self {
            Dist::Fixed(n) | Dist::Uniform(_, n) => n,
        }
    }
}

impl FromStr for Dist {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |t: &str| {
            t.trim().parse::<u32>().map_err(|_| {
                format!(
                    "`{s}` is not a length: use `N` or `MIN-MAX` (for example `64` or `32-128`)"
                )
            })
        };
        let dist = match s.split_once('-') {
            Some((lo, hi)) => Dist::Uniform(number(lo)?, number(hi)?),
            None => Dist::Fixed(number(s)?),
        };
        match dist {
            Dist::Fixed(0) | Dist::Uniform(0, _) => Err(format!("`{s}`: lengths start at 1")),
            Dist::Uniform(lo, hi) if lo > hi => Err(format!("`{s}`: MIN is above MAX")),
            d => Ok(d),
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Fixed(n) => write!(f, "{n}"),
            Dist::Uniform(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

/// One prompt: raw text or chat turns. A JSONL line is one of
/// `{"prompt": "..."}` or `{"messages": [{"role": "user", "content": "..."}]}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Prompt {
    Text { prompt: String },
    Chat { messages: Vec<Turn> },
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    pub role: String,
    pub content: String,
}

/// Short instructions of different kinds, sent as chat turns (the demo
/// model is an instruct model).
const BUILT_IN: &[&str] = &[
    "Explain what a GPU does in two sentences.",
    "Write a short poem about the sea.",
    "List three uses of a hash map.",
    "What is the capital of France, and why is it famous?",
    "Describe how to make a cup of tea.",
    "Give me a name for a small grey cat.",
    "Why is the sky blue?",
    "Summarise the plot of Romeo and Juliet.",
    "Write a haiku about autumn leaves.",
    "How do I reverse a list in Python?",
    "What are the planets of the solar system?",
    "Tell me a fun fact about octopuses.",
    "Suggest a healthy breakfast.",
    "What is the difference between weather and climate?",
    "Write one sentence that uses the word 'serendipity'.",
    "How does a bicycle stay upright?",
];

/// Words that pad a prompt to a drawn input length (common English words,
/// about one token each for a BPE tokenizer).
const FILLER: &str = "the quick brown fox jumps over a lazy dog while people in the old town \
    talk about rain and the price of bread and the river runs past the mill";

/// The settings every request of a run shares.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub model: String,
    /// Route only to slices of this profile (compare sets it per group).
    pub profile: Option<String>,
    #[serde(skip)]
    pub prompts: Vec<Prompt>,
    /// Where the prompts came from: `built-in` or the file.
    pub prompt_source: String,
    /// Words in the user's text; unset keeps each prompt as it is.
    pub input_words: Option<Dist>,
    pub output_tokens: Dist,
    pub ignore_eos: bool,
    pub temperature: f32,
    pub seed: u64,
}

impl Workload {
    pub fn built_in_prompts() -> Vec<Prompt> {
        BUILT_IN
            .iter()
            .map(|p| Prompt::Chat {
                messages: vec![Turn {
                    role: "user".into(),
                    content: p.to_string(),
                }],
            })
            .collect()
    }

    /// Reads a JSONL prompt file; errors name the line.
    pub fn read_prompts(path: &Path) -> Result<Vec<Prompt>, LoadtestError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadtestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut prompts = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let err = |reason: String| LoadtestError::Prompts {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let prompt: Prompt = serde_json::from_str(line).map_err(|_| {
                err("expected {\"prompt\": \"...\"} or {\"messages\": [{\"role\": ..., \"content\": ...}]}".into())
            })?;
            if let Prompt::Chat { messages } = &prompt {
                if messages.is_empty() {
                    return Err(err("`messages` is empty".into()));
                }
            }
            prompts.push(prompt);
        }
        if prompts.is_empty() {
            return Err(LoadtestError::Prompts {
                path: path.to_path_buf(),
                line: 0,
                reason: "the file holds no prompt".into(),
            });
        }
        Ok(prompts)
    }

    /// Request number `index` of a run.
    pub fn request(&self, index: u64) -> GenerateRequest {
        // Each request its own stream, so a request does not depend on how
        // many were drawn before it (open and closed loops draw differently).
        let mut rng = StdRng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let prompt = &self.prompts[rng.random_range(0..self.prompts.len())];
        let words = self.input_words.map(|d| d.sample(&mut rng));
        let max_tokens = self.output_tokens.sample(&mut rng);
        let (prompt, messages) = match prompt {
            Prompt::Text { prompt } => (fit(prompt, words), Vec::new()),
            Prompt::Chat { messages } => {
                let last = messages.len() - 1;
                let messages = messages
                    .iter()
                    .enumerate()
                    .map(|(i, t)| ChatMessage {
                        role: t.role.clone(),
                        content: if i == last {
                            fit(&t.content, words)
                        } else {
                            t.content.clone()
                        },
                    })
                    .collect();
                (String::new(), messages)
            }
        };
        GenerateRequest {
            model: self.model.clone(),
            prompt,
            messages,
            max_tokens: Some(max_tokens),
            temperature: Some(self.temperature),
            seed: Some(self.seed.wrapping_add(index)),
            ignore_eos: self.ignore_eos,
            profile: self.profile.clone().unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// The text cut or padded (with filler words) to `words` words.
fn fit(text: &str, words: Option<u32>) -> String {
    let Some(n) = words else {
        return text.to_string();
    };
    text.split_whitespace()
        .chain(FILLER.split_whitespace().cycle())
        .take(n as usize)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        Workload {
            model: "m".into(),
            profile: None,
            prompts: Workload::built_in_prompts(),
            prompt_source: "built-in".into(),
            input_words: Some("5-40".parse().unwrap()),
            output_tokens: "8-16".parse().unwrap(),
            ignore_eos: true,
            temperature: 0.0,
            seed: 7,
        }
    }

    #[test]
    fn lengths_parse_and_bad_ones_say_why() {
        assert_eq!("64".parse::<Dist>(), Ok(Dist::Fixed(64)));
        assert_eq!("32-128".parse::<Dist>(), Ok(Dist::Uniform(32, 128)));
        assert!("0".parse::<Dist>().unwrap_err().contains("start at 1"));
        assert!("9-3"
            .parse::<Dist>()
            .unwrap_err()
            .contains("MIN is above MAX"));
        assert!("x"
            .parse::<Dist>()
            .unwrap_err()
            .contains("`N` or `MIN-MAX`"));
    }

    #[test]
    fn requests_depend_only_on_seed_and_index_and_respect_the_lengths() {
        let w = workload();
        for i in 0..50 {
            let a = w.request(i);
            assert_eq!(a, w.request(i));
            let max = a.max_tokens.unwrap();
            assert!((8..=16).contains(&max), "{max}");
            let words = a.messages[0].content.split_whitespace().count();
            assert!((5..=40).contains(&words), "{words}");
            assert!(a.ignore_eos);
        }
        let other = Workload {
            seed: 8,
            ..w.clone()
        };
        assert!((0..20).any(|i| other.request(i) != w.request(i)));
    }

    #[test]
    fn prompt_files_are_jsonl_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\": \"hello\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
        )
        .unwrap();
        let prompts = Workload::read_prompts(&path).unwrap();
        assert_eq!(prompts.len(), 2);
        assert_eq!(
            prompts[0],
            Prompt::Text {
                prompt: "hello".into()
            }
        );
        std::fs::write(&path, "{\"prompt\": \"ok\"}\n{\"promt\": \"typo\"}\n").unwrap();
        let err = Workload::read_prompts(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
