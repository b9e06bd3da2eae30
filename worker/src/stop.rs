//! Stop strings over streamed text.
//!
//! Text that could be the start of a stop string is held back until the next
//! token shows whether it is; the stop string itself is never sent.

#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released: a possible start of a stop string.
    pending: String,
}

/// What to send after pushing text.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    pub text: String,
    /// A stop string was found; nothing more is to be generated.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops,
            pending: String::new(),
        }
    }

    /// Adds newly decoded text; returns what can be sent now.
    pub fn push(&mut self, text: &str) -> Released {
        self.pending.push_str(text);
        if self.stops.is_empty() {
            return Released {
                text: std::mem::take(&mut self.pending),
                stopped: false,
            };
        }
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let mut text = std::mem::take(&mut self.pending);
            text.truncate(at);
            return Released {
                text,
                stopped: true,
            };
        }
        let hold = self.held_suffix_len();
        let release_to = self.pending.len() - hold;
        let rest = self.pending.split_off(release_to);
        Released {
            text: std::mem::replace(&mut self.pending, rest),
            stopped: false,
        }
    }

    /// Releases what was held back (the generation ended another way).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a
    /// stop string.
    fn held_suffix_len(&self) -> usize {
        let p = &self.pending;
        self.stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len().min(p.len() + 1))
                    .rev()
                    .filter(|&n| stop.is_char_boundary(n) && p.ends_with(&stop[..n]))
                    .take(1)
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_all(m: &mut StopMatcher, parts: &[&str]) -> (String, bool) {
        let mut out = String::new();
        for p in parts {
            let r = m.push(p);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn without_stops_everything_passes_through() {
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(push_all(&mut m, &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn stop_split_across_pushes_is_found_and_cut() {
        let mut m = StopMatcher::new(vec!["\n\nUser:".into()]);
        assert_eq!(
            push_all(&mut m, &["Hello", " there\n", "\nUs", "er: hi"]),
            ("Hello there".into(), true)
        );
    }

    #[test]
    fn partial_match_is_held_then_released() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("aST").text, "a");
        assert_eq!(m.push("x").text, "STx");
        assert_eq!(m.push("ST").text, "");
        assert_eq!(m.finish(), "ST");
    }

    #[test]
    fn earliest_of_several_stops_wins_and_multibyte_is_safe() {
        let mut m = StopMatcher::new(vec!["é!".into(), "b".into()]);
        assert_eq!(push_all(&mut m, &["aé", "!b"]), ("a".into(), true));
        let mut m = StopMatcher::new(vec!["éé".into()]);
        assert_eq!(m.push("xé").text, "x");
        assert_eq!(m.finish(), "é");
    }
}
