//! The Dockerfile parser: text -> [`Dockerfile`], a list of [`Instruction`]s
//! each with its line, keyword, flags and arguments. No variable is expanded
//! here (that is [`super::expand`], per instruction, when the stage runs).
//!
//! Grammar, as Docker's reference gives it:
//! ```text
//! file        = directive* (comment | blank | instruction)*
//! directive   = "#" ws* name ws* "=" ws* value      (only before anything else)
//! instruction = KEYWORD (ws+ "--" flag)* ws+ args   (keyword case-insensitive)
//! args        = exec-form JSON array | shell form text
//! line end    = ESCAPE newline continues the line; comment lines inside a
//!               continuation are dropped; `<<[-]["']WORD["']` starts a heredoc
//!               that runs to a line equal to WORD
//! ```
//! An args text that starts with `[` but is not a JSON array of strings is
//! shell form, as in Docker.

use std::fmt;

/// A parse error, naming the file and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    /// The Dockerfile's name as given.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The keywords a Dockerfile may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `FROM`
    From,
    /// `RUN`
    Run,
    /// `CMD`
    Cmd,
    /// `LABEL`
    Label,
    /// `MAINTAINER` (deprecated: a label)
    Maintainer,
    /// `EXPOSE`
    Expose,
    /// `ENV`
    Env,
    /// `ADD`
    Add,
    /// `COPY`
    Copy,
    /// `ENTRYPOINT`
    Entrypoint,
    /// `VOLUME`
    Volume,
    /// `USER`
    User,
    /// `WORKDIR`
    Workdir,
    /// `ARG`
    Arg,
    /// `ONBUILD`
    Onbuild,
    /// `STOPSIGNAL`
    Stopsignal,
    /// `HEALTHCHECK`
    Healthcheck,
    /// `SHELL`
    Shell,
}

impl Keyword {
    const ALL: [(Keyword, &'static str); 18] = [
        (Keyword::From, "FROM"),
        (Keyword::Run, "RUN"),
        (Keyword::Cmd, "CMD"),
        (Keyword::Label, "LABEL"),
        (Keyword::Maintainer, "MAINTAINER"),
        (Keyword::Expose, "EXPOSE"),
        (Keyword::Env, "ENV"),
        (Keyword::Add, "ADD"),
        (Keyword::Copy, "COPY"),
        (Keyword::Entrypoint, "ENTRYPOINT"),
        (Keyword::Volume, "VOLUME"),
        (Keyword::User, "USER"),
        (Keyword::Workdir, "WORKDIR"),
        (Keyword::Arg, "ARG"),
        (Keyword::Onbuild, "ONBUILD"),
        (Keyword::Stopsignal, "STOPSIGNAL"),
        (Keyword::Healthcheck, "HEALTHCHECK"),
        (Keyword::Shell, "SHELL"),
    ];

    /// The keyword for `word`, in any case.
    pub fn parse(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(word))
            .map(|(k, _)| *k)
    }

    /// The keyword in upper case, as Docker writes it in history.
    pub fn name(self) -> &'static str {
        Keyword::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .expect("every keyword is in ALL")
    }

    /// Whether the instruction takes `--flag` options.
    fn takes_flags(self) -> bool {
        matches!(
            self,
            Keyword::From | Keyword::Run | Keyword::Add | Keyword::Copy | Keyword::Healthcheck
        )
    }

    /// Whether the exec (JSON) form means something for this instruction.
    fn exec_form(self) -> bool {
        matches!(
            self,
            Keyword::Run
                | Keyword::Cmd
                | Keyword::Entrypoint
                | Keyword::Shell
                | Keyword::Add
                | Keyword::Copy
                | Keyword::Volume
        )
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// The JSON array form.
    Exec(Vec<String>),
    /// The text form (continuations joined, not yet expanded).
    Shell(String),
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The word after `<<`.
    pub name: String,
    /// Its lines, each ending in a newline.
    pub content: String,
    /// Whether variables in it are expanded (an unquoted word).
    pub expand: bool,
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Line of the keyword (1-based).
    pub line: usize,
    /// The keyword.
    pub keyword: Keyword,
    /// `--name[=value]` options, in order.
    pub flags: Vec<(String, Option<String>)>,
    /// The arguments.
    pub args: Args,
    /// Heredocs started on the instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    /// For `ONBUILD`: the instruction it registers.
    pub nested: Option<Box<Instruction>>,
    /// The arguments' text as written (after flags), for history.
    pub text: String,
}

impl Instruction {
    /// The value of flag `name` (the last one given), if given with a value.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Every value given for flag `name`.
    pub fn flag_all(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    /// The `# syntax=` directive, if any (recorded; no frontend is fetched).
    pub syntax: Option<String>,
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
}

/// Parses `text`; errors name `file`.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let err = |line: usize, message: String| ParseError {
        file: file.to_owned(),
        line,
        message,
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Directives: only at the very top, before any blank, comment or instruction.
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else {
            break;
        };
        match name.as_str() {
            "escape" => {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(err(
                            i + 1,
                            format!("invalid escape character {other:?}: use \\ or `"),
                        ))
                    }
                }
            }
            "syntax" => syntax = Some(value),
            // Unknown directives are comments (Docker ignores them too).
            _ => {}
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let first = i;
        let trimmed = lines[i].trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        // Join continuation lines.
        let mut logical = String::new();
        loop {
            let raw = lines[i].trim_end_matches(['\n', '\r']);
            i += 1;
            let stripped = raw.trim_end();
            if let Some(body) = stripped.strip_suffix(escape) {
                {
                    logical.push_str(body);
                    // Skip comment and empty lines inside the continuation.
                    while i < lines.len() {
                        let t = lines[i].trim();
                        if t.starts_with('#') || t.is_empty() {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i < lines.len() {
                        continue;
                    }
                    break;
                }
            }
            logical.push_str(raw);
            break;
        }
        let mut instruction =
            parse_instruction(&logical, first + 1).map_err(|m| err(first + 1, m))?;
        // Heredocs: their bodies follow the instruction's last line.
        let words = heredoc_words(&logical, instruction.keyword, &instruction.nested);
        for (name, expand, strip_tabs) in words {
            let mut content = String::new();
            loop {
                let Some(line) = lines.get(i) else {
                    return Err(err(
                        first + 1,
                        format!("heredoc <<{name} is not terminated: no line {name}"),
                    ));
                };
                i += 1;
                let body = line.trim_end_matches(['\n', '\r']);
                let body = if strip_tabs {
                    body.trim_start_matches('\t')
                } else {
                    body
                };
                if body == name {
                    break;
                }
                content.push_str(body);
                content.push('\n');
            }
            instruction.heredocs.push(Heredoc {
                name,
                content,
                expand,
            });
        }
        instructions.push(instruction);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        instructions,
    })
}

/// `# name=value` at the top of the file, or `None`.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.trim().to_owned()))
}

fn parse_instruction(logical: &str, line: usize) -> Result<Instruction, String> {
    let text = logical.trim_start();
    let (word, rest) = text
        .split_once(|c: char| c.is_whitespace())
        .unwrap_or((text, ""));
    let keyword = Keyword::parse(word)
        .ok_or_else(|| format!("unknown instruction: {}", word.to_ascii_uppercase()))?;
    let mut rest = rest.trim_start();
    let mut flags = Vec::new();
    if keyword.takes_flags() {
        while let Some(flag) = rest.strip_prefix("--") {
            let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
            let token = &flag[..end];
            match token.split_once('=') {
                Some((n, v)) => flags.push((n.to_owned(), Some(v.to_owned()))),
                None => flags.push((token.to_owned(), None)),
            }
            rest = flag[end..].trim_start();
        }
    }
    let rest = rest.trim_end();
    let mut nested = None;
    if keyword == Keyword::Onbuild {
        if rest.is_empty() {
            return Err("ONBUILD needs an instruction".into());
        }
        let inner = parse_instruction(rest, line)?;
        if matches!(
            inner.keyword,
            Keyword::Onbuild | Keyword::From | Keyword::Maintainer
        ) {
            return Err(format!(
                "{} is not allowed as an ONBUILD trigger",
                inner.keyword
            ));
        }
        nested = Some(Box::new(inner));
    }
    let args = if keyword.exec_form() && rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Exec(v),
            Err(_) => Args::Shell(rest.to_owned()),
        }
    } else {
        Args::Shell(rest.to_owned())
    };
    let needs_args = !matches!(keyword, Keyword::Cmd | Keyword::Entrypoint | Keyword::Run);
    if needs_args && rest.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    if keyword == Keyword::Shell && !matches!(args, Args::Exec(_)) {
        return Err("SHELL requires the arguments to be in JSON form".into());
    }
    Ok(Instruction {
        line,
        keyword,
        flags,
        args,
        heredocs: Vec::new(),
        nested,
        text: rest.to_owned(),
    })
}

/// The heredoc words (`<<WORD`, `<<-WORD`, `<<"WORD"`) of an instruction that
/// takes heredocs (RUN, COPY, ADD), in order: (word, expand, strip tabs).
fn heredoc_words(
    logical: &str,
    keyword: Keyword,
    nested: &Option<Box<Instruction>>,
) -> Vec<(String, bool, bool)> {
    let k = nested.as_ref().map_or(keyword, |n| n.keyword);
    if !matches!(k, Keyword::Run | Keyword::Copy | Keyword::Add) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut rest = logical;
    while let Some(at) = rest.find("<<") {
        let mut w = &rest[at + 2..];
        let strip_tabs = w.starts_with('-');
        if strip_tabs {
            w = &w[1..];
        }
        let (quote, body) = match w.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &w[1..]),
            _ => (None, w),
        };
        let end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .unwrap_or(body.len());
        let name = &body[..end];
        let mut consumed = end;
        if let Some(q) = quote {
            if body[end..].starts_with(q) {
                consumed += 1;
            } else {
                rest = &body[end..];
                continue;
            }
        }
        if !name.is_empty() {
            out.push((name.to_owned(), quote.is_none(), strip_tabs));
        }
        rest = &body[consumed..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let mut d = parse("Dockerfile", text).unwrap();
        assert_eq!(d.instructions.len(), 1, "{:?}", d.instructions);
        d.instructions.remove(0)
    }

    #[test]
    fn keywords_are_case_insensitive_and_lines_counted() {
        let d = parse("Dockerfile", "# c\n\nfrom busybox AS b\n  run echo hi\n").unwrap();
        assert_eq!(d.instructions[0].keyword, Keyword::From);
        assert_eq!(d.instructions[0].line, 3);
        assert_eq!(d.instructions[1].keyword, Keyword::Run);
        assert_eq!(d.instructions[1].line, 4);
        assert_eq!(d.instructions[1].args, Args::Shell("echo hi".into()));
    }

    #[test]
    fn continuations_join_and_skip_comments() {
        let i = one("RUN echo a \\\n# inside\n\n  b \\\n  c\n");
        assert_eq!(i.args, Args::Shell("echo a   b   c".into()));
    }

    #[test]
    fn escape_directive_changes_continuation() {
        let d = parse("D", "# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(
            d.instructions[1].args,
            Args::Shell("dir c:\\   && echo".into())
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let d = parse(
            "D",
            "# syntax=docker/dockerfile:1\nFROM x\n# escape=`\nRUN a \\\n b\n",
        )
        .unwrap();
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions[1].args, Args::Shell("a  b".into()));
    }

    #[test]
    fn exec_form_and_invalid_json_is_shell_form() {
        assert_eq!(
            one("CMD [\"a\", \"b c\"]").args,
            Args::Exec(vec!["a".into(), "b c".into()])
        );
        assert_eq!(one("CMD [a, b]").args, Args::Shell("[a, b]".into()));
        assert_eq!(one("CMD [\"a\", 1]").args, Args::Shell("[\"a\", 1]".into()));
        // Not an exec-form instruction: text stays text.
        assert_eq!(one("LABEL [\"a\"]").args, Args::Shell("[\"a\"]".into()));
    }

    #[test]
    fn flags_are_split_off() {
        let i = one("COPY --from=build --chown=1:2 --link a /b/");
        assert_eq!(i.flag("from"), Some("build"));
        assert_eq!(i.flag("chown"), Some("1:2"));
        assert!(i.flags.iter().any(|(n, v)| n == "link" && v.is_none()));
        assert_eq!(i.args, Args::Shell("a /b/".into()));
        // ENV takes no flags: the text stays as written.
        assert_eq!(one("ENV --x=1").args, Args::Shell("--x=1".into()));
    }

    #[test]
    fn heredocs() {
        let d = parse(
            "D",
            "FROM x\nRUN <<EOF\necho a\necho b\nEOF\nCOPY <<-\"END\" /f\n\thello $x\nEND\nCMD x\n",
        )
        .unwrap();
        let run = &d.instructions[1];
        assert_eq!(
            run.heredocs,
            vec![Heredoc {
                name: "EOF".into(),
                content: "echo a\necho b\n".into(),
                expand: true
            }]
        );
        let copy = &d.instructions[2];
        assert_eq!(copy.heredocs[0].content, "hello $x\n");
        assert!(!copy.heredocs[0].expand);
        assert_eq!(d.instructions[3].keyword, Keyword::Cmd);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("app/Dockerfile", "FROM x\n\nFROBNICATE y\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "app/Dockerfile:3: unknown instruction: FROBNICATE"
        );
        let e = parse("D", "FROM x\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("D", "FROM x\nSHELL sh -c\n").unwrap_err();
        assert!(e.message.contains("JSON"), "{e}");
        let e = parse("D", "FROM\n").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn onbuild_nests() {
        let i = one("ONBUILD RUN echo hi");
        let n = i.nested.unwrap();
        assert_eq!(n.keyword, Keyword::Run);
        assert_eq!(n.args, Args::Shell("echo hi".into()));
        assert!(parse("D", "ONBUILD FROM x").is_err());
    }
}
