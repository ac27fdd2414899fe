//! Variable expansion and word splitting, as Docker's shell lexer does it
//! for the instructions it expands (FROM, ENV, ARG, LABEL, WORKDIR, USER,
//! COPY, ADD, EXPOSE, VOLUME, STOPSIGNAL, ONBUILD's own; never RUN, CMD or
//! ENTRYPOINT, which the shell or nobody expands).
//!
//! ```text
//! $name  ${name}         the value, or empty
//! ${name:-word}          word if name is unset or empty
//! ${name-word}           word if name is unset
//! ${name:+word}          word if name is set and not empty, else empty
//! ${name+word}           word if name is set, else empty
//! ${name:?msg} ${name?msg}  an error if unset (or empty)
//! 'text'                 literal, no expansion
//! "text"                 expanded, quotes removed
//! ESC c                  c, literally (ESC is `\` or the `# escape=`)
//! ```

/// An expansion error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${` without its `}`.
    #[error("missing '}}' in {0:?}")]
    Unterminated(String),
    /// `${name:?message}` on an unset variable.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// Its message.
        message: String,
    },
    /// A `${name...}` form this lexer does not know.
    #[error("unsupported modifier in {0:?}")]
    Modifier(String),
    /// A quote without its closing quote.
    #[error("unterminated quote in {0:?}")]
    Quote(String),
}

/// Where variables come from.
pub trait Vars {
    /// The value of `name`, or `None` if unset.
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Vars for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    text: &'a str,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }

    /// Processes up to `stop` (not consumed) or the end. With `split`,
    /// unquoted whitespace ends words. Returns the words.
    fn process(&mut self, stop: Option<char>, split: bool) -> Result<Vec<String>, ExpandError> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            if split && c.is_whitespace() {
                self.pos += 1;
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            in_word = true;
            self.pos += 1;
            match c {
                '\'' => loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(ExpandError::Quote(self.text.to_owned())),
                    }
                },
                '"' => loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') => word.push_str(&self.dollar()?),
                        Some(e) if e == self.escape => match self.next() {
                            Some(ch @ ('"' | '$')) => word.push(ch),
                            Some(ch) if ch == self.escape => word.push(ch),
                            Some(ch) => {
                                word.push(e);
                                word.push(ch);
                            }
                            None => return Err(ExpandError::Quote(self.text.to_owned())),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err(ExpandError::Quote(self.text.to_owned())),
                    }
                },
                '$' => word.push_str(&self.dollar()?),
                e if e == self.escape => match self.next() {
                    Some(ch) => word.push(ch),
                    None => word.push(e),
                },
                ch => word.push(ch),
            }
        }
        if in_word {
            words.push(word);
        }
        Ok(words)
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`: the expansion.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let name = self.name();
                match self.next() {
                    Some('}') if !name.is_empty() => Ok(self.vars.get(&name).unwrap_or_default()),
                    Some(':') => {
                        let op = self.next();
                        let word = self.word_to_brace()?;
                        let value = self.vars.get(&name).filter(|v| !v.is_empty());
                        self.modify(&name, value, op, word)
                    }
                    Some(op @ ('-' | '+' | '?')) => {
                        let word = self.word_to_brace()?;
                        let value = self.vars.get(&name);
                        self.modify(&name, value, Some(op), word)
                    }
                    None => Err(ExpandError::Unterminated(self.text.to_owned())),
                    Some(_) => Err(ExpandError::Modifier(self.text.to_owned())),
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let name = self.name();
                Ok(self.vars.get(&name).unwrap_or_default())
            }
            _ => Ok("$".to_owned()),
        }
    }

    fn word_to_brace(&mut self) -> Result<String, ExpandError> {
        let word = self.process(Some('}'), false)?.concat();
        match self.next() {
            Some('}') => Ok(word),
            _ => Err(ExpandError::Unterminated(self.text.to_owned())),
        }
    }

    fn modify(
        &self,
        name: &str,
        value: Option<String>,
        op: Option<char>,
        word: String,
    ) -> Result<String, ExpandError> {
        match op {
            Some('-') => Ok(value.unwrap_or(word)),
            Some('+') => Ok(if value.is_some() { word } else { String::new() }),
            Some('?') => value.ok_or_else(|| ExpandError::Required {
                name: name.to_owned(),
                message: if word.is_empty() {
                    "is not set".into()
                } else {
                    word
                },
            }),
            _ => Err(ExpandError::Modifier(self.text.to_owned())),
        }
    }
}

/// Expands `text` as one word: variables replaced, quotes and escapes removed.
pub fn word(text: &str, escape: char, vars: &dyn Vars) -> Result<String, ExpandError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        escape,
        vars,
        text,
    };
    Ok(lexer.process(None, false)?.concat())
}

/// Expands `text` and splits it into words at unquoted whitespace.
pub fn words(text: &str, escape: char, vars: &dyn Vars) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        escape,
        vars,
        text,
    };
    lexer.process(None, true)
}

/// Splits `text` at unquoted whitespace without expanding or removing
/// quotes (so each piece can be expanded later, as ENV and LABEL do).
pub fn raw_words(text: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), _) => {}
            (_, e) if e == escape => {
                cur.push(e);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses `ENV`/`LABEL`/`ARG`-style text into (key, raw value) pairs:
/// `k=v k2="v 2"`, or the legacy `KEY value with spaces` (one pair, only
/// when `legacy`). Values are returned unexpanded.
pub fn key_values(
    text: &str,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, Option<String>)>, String> {
    let words = raw_words(text, escape);
    let Some(first) = words.first() else {
        return Err("needs at least one argument".into());
    };
    if legacy && !first.contains('=') {
        let rest = text.trim_start()[first.len()..].trim();
        if rest.is_empty() {
            return Err(format!("{first} needs a value"));
        }
        return Ok(vec![(first.clone(), Some(rest.to_owned()))]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), Some(v.to_owned()))),
            Some(_) => Err(format!("invalid key=value {w:?}: empty key")),
            None if legacy => Err(format!("{w:?} is not key=value")),
            None => Ok((w, None)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "a" => Some("A".into()),
            "empty" => Some(String::new()),
            "sp" => Some("x y".into()),
            _ => None,
        }
    }

    fn w(text: &str) -> String {
        word(text, '\\', &vars).unwrap()
    }

    #[test]
    fn simple_forms() {
        assert_eq!(w("$a/${a}x$none."), "A/Ax.");
        assert_eq!(w("\\$a"), "$a");
        assert_eq!(w("'$a'\"$a\""), "$aA");
        assert_eq!(w("cost $5"), "cost ");
        assert_eq!(w("50$"), "50$");
        assert_eq!(w("$-x"), "$-x");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${none:-d}|${empty:-d}|${a:-d}"), "d|d|A");
        assert_eq!(w("${none-d}|${empty-d}|${a-d}"), "d||A");
        assert_eq!(w("${none:+s}|${empty:+s}|${a:+s}"), "||s");
        assert_eq!(w("${none+s}|${empty+s}|${a+s}"), "|s|s");
        assert_eq!(w("${none:-${a}b}"), "Ab");
        assert!(matches!(
            word("${none:?needed}", '\\', &vars),
            Err(ExpandError::Required { .. })
        ));
        assert!(matches!(
            word("${a", '\\', &vars),
            Err(ExpandError::Unterminated(_))
        ));
        assert!(matches!(
            word("${a/x/y}", '\\', &vars),
            Err(ExpandError::Modifier(_))
        ));
    }

    #[test]
    fn word_splitting_respects_quotes() {
        assert_eq!(
            words("a  \"b c\" $sp 'd e'", '\\', &vars).unwrap(),
            vec!["a", "b c", "x y", "d e"]
        );
        assert_eq!(words("a\\ b", '\\', &vars).unwrap(), vec!["a b"]);
        assert_eq!(words("a`$a", '`', &vars).unwrap(), vec!["a$a"]);
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(
            key_values("a=1 b=\"x y\" c", '\\', false).unwrap(),
            vec![
                ("a".into(), Some("1".into())),
                ("b".into(), Some("\"x y\"".into())),
                ("c".into(), None)
            ]
        );
        assert_eq!(
            key_values("PATH /a b", '\\', true).unwrap(),
            vec![("PATH".into(), Some("/a b".into()))]
        );
        assert!(key_values("=x", '\\', true).is_err());
    }
}
