//! Renders chat turns with the Jinja template stored in the model file
//! (`tokenizer.chat_template`), keeping the template's own text apart from
//! the users' text so that only the template can produce control tokens.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

/// Marks where a message's content goes in the rendered template. Private
/// use code points: never produced by a template, never tokenized.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// A piece of a rendered chat prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text written by the template (trusted: may contain control tokens).
    Template(String),
    /// The content of message `i` (untrusted: tokenized as plain text).
    Content(usize),
}

#[derive(Debug, Clone, Serialize)]
pub struct Turn<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

fn raise_exception(msg: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles a Hugging Face style chat template.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        // Templates written for Python Jinja call string methods such as
        // `.strip()`; pycompat provides them.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("chat template does not compile: {e}"))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// Renders the turns followed by the assistant's generation prompt, as
    /// segments: the template's text and placeholders for each content.
    pub fn render(&self, roles: &[&str]) -> Result<Vec<Segment>, String> {
        let markers: Vec<String> = (0..roles.len())
            .map(|i| format!("{OPEN}{i}{CLOSE}"))
            .collect();
        let turns: Vec<Turn> = roles
            .iter()
            .zip(&markers)
            .map(|(role, content)| Turn { role, content })
            .collect();
        let rendered = self
            .env
            .get_template("chat")
            .and_then(|t| {
                t.render(context! {
                    messages => turns,
                    add_generation_prompt => true,
                    bos_token => self.bos_token,
                    eos_token => self.eos_token,
                })
            })
            .map_err(|e| format!("chat template: {e}"))?;
        Ok(split(&rendered))
    }
}

/// Splits rendered text at the content markers.
fn split(rendered: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = rendered;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else { break };
        let Ok(index) = after[..end].parse::<usize>() else {
            break;
        };
        if start > 0 {
            out.push(Segment::Template(rest[..start].to_string()));
        }
        out.push(Segment::Content(index));
        rest = &after[end + CLOSE.len_utf8()..];
    }
    if !rest.is_empty() {
        out.push(Segment::Template(rest.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as stored in its GGUF file.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_default_system_prompt_and_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").unwrap();
        let segs = t.render(&["user"]).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment::Template(
                    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n".into()
                ),
                Segment::Content(0),
                Segment::Template("<|im_end|>\n<|im_start|>assistant\n".into()),
            ]
        );
    }

    #[test]
    fn keeps_an_explicit_system_prompt() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let segs = t.render(&["system", "user"]).unwrap();
        assert_eq!(segs[0], Segment::Template("<|im_start|>system\n".into()));
        assert_eq!(segs[1], Segment::Content(0));
        assert_eq!(segs[3], Segment::Content(1));
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let t = ChatTemplate::new(
            "{% if messages[0]['role'] == 'x' %}{{ raise_exception('bad role') }}{% endif %}{{ ' a '.strip() }}",
            "",
            "",
        )
        .unwrap();
        assert_eq!(
            t.render(&["user"]).unwrap(),
            vec![Segment::Template("a".into())]
        );
        assert!(t.render(&["x"]).unwrap_err().contains("bad role"));
    }
}
