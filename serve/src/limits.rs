//! Marks and limits that the gateway and the worker must agree on.

/// A worker serving the identity model (it echoes the prompt, computes
/// nothing) must have this in its model name, so that its figures are never
/// taken for a real model's in metrics and reports. The fleet file and the
/// worker's command line both check it.
pub const IDENTITY_MARK: &str = "identity";

/// The same for a synthetic model (a public shape with random weights).
pub use mig_slices::synthetic::NAME_MARK as SYNTHETIC_MARK;

/// Longest `profile` a request may name, in bytes (MIG profiles are like
/// `7g.80gb`, CPU ones `cpu-16c`): the gateway checks it before routing,
/// the worker again for callers that reach it straight.
pub const MAX_PROFILE_BYTES: usize = 64;

/// Response header in which a worker says how many tokens a generation's
/// prompt has, as soon as it took the request (the gateway charges them to
/// the tenant then, before any token streams).
pub const PROMPT_TOKENS_HEADER: &str = "mig-prompt-tokens";

/// Longest client-supplied text an error message repeats, in bytes.
pub const MAX_ECHO_BYTES: usize = 64;

/// `text` as an error message may repeat it: whole when short and
/// printable, else its printable start and its length, so an error never
/// carries a long (or terminal-controlling) value back.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    shown_within(text, MAX_ECHO_BYTES)
}

/// [`shown`] with a bound of `max` bytes, for texts the server itself wrote
/// around a client's value (a decoder's error naming the field).
pub fn shown_within(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max && !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut start = String::new();
    for c in text.chars() {
        if start.len() + c.len_utf8() > max {
            break;
        }
        start.push(if c.is_control() { '?' } else { c });
    }
    if start.len() == text.len() {
        return start.into();
    }
    format!("{start}… ({} bytes)", text.len()).into()
}

/// `message` with every quoted value (between backquotes or double
/// quotes) as [`shown`] repeats it: for an error built by code that quotes
/// a client's values whole (a decoder's, a parser's), before it leaves.
pub fn values_cut(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().expect("found");
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find(quote) {
            Some(close) => {
                out.push_str(&shown(&after[..close]));
                out.push(quote);
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&shown(after));
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_control_text_is_cut_before_it_is_shown() {
        assert_eq!(shown("qwen2.5-0.5b"), "qwen2.5-0.5b");
        assert_eq!(shown("a\u{1b}[2Jb"), "a?[2Jb");
        let long = "x".repeat(10_000);
        let s = shown(&long);
        assert!(s.len() < 90 && s.ends_with("… (10000 bytes)"), "{s}");
        // Never cut inside a character.
        assert!(shown(&"é".repeat(100)).starts_with("éé"));
    }

    #[test]
    fn every_quoted_value_of_a_message_is_cut() {
        let long = "a".repeat(5000);
        let message = format!(
            "plan: gpu_model: invalid type: string \"{long}\", expected `{long}` at line 1"
        );
        let cut = values_cut(&message);
        assert!(cut.len() < 250, "{cut}");
        assert!(
            cut.starts_with("plan: gpu_model: invalid type: string \"aaaa"),
            "{cut}"
        );
        assert!(cut.ends_with("… (5000 bytes)` at line 1"), "{cut}");
        assert_eq!(
            values_cut("GPU model `h100` and \"x\""),
            "GPU model `h100` and \"x\""
        );
        // An unclosed quote cuts to the end.
        assert!(values_cut(&format!("`{long}")).len() < 100);
    }
}
