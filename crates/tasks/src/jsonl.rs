//! Problems as JSON Lines: export, import, and user problem sets.
//!
//! An exported line is a [`Problem`] as JSON: `id`, `task`, `level`,
//! `prompt`, `answer`, `solution`, `verifier` and whatever that verifier
//! needs (`numbers` and `target` for countdown, `function` and `tests` for
//! code tests, `program` for code output).
//!
//! An imported line needs only `prompt`, `answer` (a string, or an integer)
//! and `verifier` (`number`, `exact`, `list`, `fraction`, or any exported
//! kind with its fields). `id` defaults to `<set>/<line>`, `task` to the set
//! name, `level` to 1, `solution` to empty. Unknown fields are ignored, so an
//! exported file with a `completion` added is still a problem file. Blank
//! lines are skipped. A line that does not parse, or whose answer its
//! verifier could never match, is an [`Error::BadLine`] naming file and line.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::answer::validate_reference;
use crate::error::{Error, Result};
use crate::problem::{Check, Problem};
use crate::split::{user_split, Split};

/// One problem as a JSON line, without the newline.
pub fn to_line(problem: &Problem) -> String {
    // Strings, integers and enums of them always serialise.
    serde_json::to_string(problem).expect("a Problem serialises to JSON")
}

/// Problems as JSONL text, one line each, newline-terminated.
pub fn to_jsonl(problems: &[Problem]) -> String {
    let mut out = String::new();
    for problem in problems {
        out.push_str(&to_line(problem));
        out.push('\n');
    }
    out
}

/// Write problems as JSONL.
pub fn write_problems(out: &mut impl Write, problems: &[Problem]) -> std::io::Result<()> {
    for problem in problems {
        writeln!(out, "{}", to_line(problem))?;
    }
    Ok(())
}

/// Problems from JSONL text; `file` names the source in errors and
/// (its stem) is the default set name.
pub fn parse_problems(text: &str, file: &str) -> Result<Vec<Problem>> {
    Ok(parse_lines(text, file)?
        .into_iter()
        .map(|line| line.problem)
        .collect())
}

/// Problems from a JSONL file.
pub fn read_problems(path: &Path) -> Result<Vec<Problem>> {
    parse_problems(&read_text(path)?, &path.display().to_string())
}

/// A problem line that also carries a model's completion to check.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The problem, as `read_problems` would read it.
    pub problem: Problem,
    /// The completion text to verify.
    pub completion: String,
}

/// Problem lines with a `completion` field each, from JSONL text.
pub fn parse_completions(text: &str, file: &str) -> Result<Vec<Completion>> {
    parse_lines(text, file)?
        .into_iter()
        .map(|line| match line.completion {
            Some(completion) => Ok(Completion {
                problem: line.problem,
                completion,
            }),
            None => Err(Error::BadLine {
                file: file.to_string(),
                line: line.number,
                message: "missing field `completion`".to_string(),
            }),
        })
        .collect()
}

/// Problem lines with a `completion` field each, from a JSONL file.
pub fn read_completions(path: &Path) -> Result<Vec<Completion>> {
    parse_completions(&read_text(path)?, &path.display().to_string())
}

/// A user's problem set: its problems and their split into train and
/// held-out parts (about one prompt in ten held out, by prompt hash; a set
/// where that picks none holds out the one with the smallest hash).
#[derive(Debug, Clone)]
pub struct ProblemSet {
    name: String,
    problems: Vec<Problem>,
    train: Vec<usize>,
    heldout: Vec<usize>,
}

impl ProblemSet {
    /// Load a JSONL problem file; the set is named after the file stem.
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self::new(
            set_name(&path.display().to_string()),
            read_problems(path)?,
        ))
    }

    /// A set from problems already in memory.
    pub fn new(name: impl Into<String>, problems: Vec<Problem>) -> Self {
        let (mut train, mut heldout): (Vec<usize>, Vec<usize>) =
            (0..problems.len()).partition(|&i| user_split(&problems[i].prompt) == Split::Train);
        if heldout.is_empty() && problems.len() > 1 {
            let hash = |i: &usize| crate::rng::hash_str(&problems[*i].prompt);
            if let Some(smallest) = train.iter().copied().min_by_key(hash) {
                let same = |i: &usize| problems[*i].prompt == problems[smallest].prompt;
                heldout = train.iter().copied().filter(same).collect();
                train.retain(|i| !same(i));
            }
        }
        Self {
            name: name.into(),
            problems,
            train,
            heldout,
        }
    }

    /// The set's name (the file stem when loaded).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every problem, in file order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// How many problems one part holds.
    pub fn len(&self, split: Split) -> usize {
        self.indices(split).len()
    }

    /// Problem `i` of one part (in file order), if there is one.
    pub fn get(&self, split: Split, i: usize) -> Option<&Problem> {
        self.indices(split).get(i).map(|&j| &self.problems[j])
    }

    fn indices(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Heldout => &self.heldout,
        }
    }
}

/// One line as written: any exported problem, or a user line with defaults.
#[derive(Deserialize)]
struct Line {
    id: Option<String>,
    task: Option<String>,
    level: Option<u32>,
    prompt: String,
    #[serde(deserialize_with = "string_or_integer")]
    answer: String,
    solution: Option<String>,
    #[serde(flatten)]
    check: Check,
    completion: Option<String>,
}

/// A parsed line and where it was.
struct ParsedLine {
    number: usize,
    problem: Problem,
    completion: Option<String>,
}

fn string_or_integer<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Answer {
        Text(String),
        Signed(i64),
        Unsigned(u64),
    }
    match Answer::deserialize(d) {
        Ok(Answer::Text(text)) => Ok(text),
        Ok(Answer::Signed(n)) => Ok(n.to_string()),
        Ok(Answer::Unsigned(n)) => Ok(n.to_string()),
        Err(_) => Err(serde::de::Error::custom(
            "`answer` must be a string or an integer",
        )),
    }
}

fn parse_lines(text: &str, file: &str) -> Result<Vec<ParsedLine>> {
    let set = set_name(file);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::BadLine {
            file: file.to_string(),
            line: line_no,
            message,
        };
        let line: Line = serde_json::from_str(raw).map_err(|e| bad(json_message(&e)))?;
        if line.prompt.trim().is_empty() {
            return Err(bad("empty `prompt`".to_string()));
        }
        validate_reference(&line.check, &line.answer).map_err(bad)?;
        if line.level == Some(0) {
            return Err(bad("`level` starts at 1".to_string()));
        }
        let problem = Problem {
            id: line.id.unwrap_or_else(|| format!("{set}/{line_no}")),
            task: line.task.unwrap_or_else(|| set.clone()),
            level: line.level.unwrap_or(1),
            prompt: line.prompt,
            answer: line.answer,
            solution: line.solution.unwrap_or_default(),
            check: line.check,
        };
        out.push(ParsedLine {
            number: line_no,
            problem,
            completion: line.completion,
        });
    }
    Ok(out)
}

/// serde_json's message without its position inside the one-line document.
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => format!("{} (column {})", &text[..at], error.column()),
        None => text,
    }
}

/// A file's stem: the default name of the set it holds.
fn set_name(file: &str) -> String {
    Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_string())
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Error::BadLine {
            file: path.display().to_string(),
            line,
            message: "not UTF-8 text".to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_lines_get_defaults() {
        let text = "{\"prompt\":\"2+2?\",\"answer\":4,\"verifier\":\"number\"}\n\n\
                    {\"id\":\"q\",\"prompt\":\"half\",\"answer\":\"1/2\",\"verifier\":\"fraction\",\"level\":3}\n";
        let problems = parse_problems(text, "dir/mine.jsonl").unwrap();
        assert_eq!(problems[0].id, "mine/1");
        assert_eq!(problems[0].task, "mine");
        assert_eq!(problems[0].answer, "4");
        assert_eq!(problems[0].level, 1);
        assert_eq!(problems[1].id, "q");
        assert_eq!(problems[1].level, 3);
        assert_eq!(problems[1].check, Check::Fraction);
    }

    #[test]
    fn export_round_trips() {
        let problem = crate::split::problem("linear", 5, Split::Train, 3).unwrap();
        let text = to_jsonl(std::slice::from_ref(&problem));
        assert_eq!(parse_problems(&text, "x.jsonl").unwrap(), [problem]);
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            ("{\"prompt\":\"p\",\"answer\":\"1\"}", "verifier"),
            (
                "{\"prompt\":\"p\",\"answer\":\"1\",\"verifier\":\"regex\"}",
                "regex",
            ),
            (
                "{\"prompt\":\"p\",\"answer\":\"x\",\"verifier\":\"number\"}",
                "'x'",
            ),
            (
                "{\"prompt\":\"p\",\"answer\":\"2/4\",\"verifier\":\"fraction\"}",
                "lowest terms",
            ),
            (
                "{\"prompt\":\"p\",\"answer\":1.5,\"verifier\":\"number\"}",
                "string or an integer",
            ),
            (
                "{\"prompt\":\" \",\"answer\":\"1\",\"verifier\":\"number\"}",
                "prompt",
            ),
            ("not json", "column"),
        ];
        for (line, needle) in cases {
            let text =
                format!("{{\"prompt\":\"ok\",\"answer\":\"1\",\"verifier\":\"number\"}}\n{line}\n");
            let err = parse_problems(&text, "f.jsonl").unwrap_err().to_string();
            assert!(err.starts_with("f.jsonl:2: "), "{err}");
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn completions_are_required_for_checking() {
        let good =
            "{\"prompt\":\"p\",\"answer\":\"1\",\"verifier\":\"number\",\"completion\":\"c\"}";
        let bare = "{\"prompt\":\"p\",\"answer\":\"1\",\"verifier\":\"number\"}";
        let found = parse_completions(&format!("{good}\n"), "c.jsonl").unwrap();
        assert_eq!(found[0].completion, "c");
        let err = parse_completions(&format!("{good}\n\n{bare}\n"), "c.jsonl").unwrap_err();
        assert_eq!(err.to_string(), "c.jsonl:3: missing field `completion`");
    }

    #[test]
    fn user_sets_split_by_prompt_hash() {
        let problems: Vec<Problem> = (0..200)
            .map(|i| Problem {
                id: i.to_string(),
                task: "s".into(),
                level: 1,
                prompt: format!("q{i}"),
                answer: "1".into(),
                solution: String::new(),
                check: Check::Number,
            })
            .collect();
        let set = ProblemSet::new("s", problems.clone());
        let held = set.len(Split::Heldout);
        assert!((5..=40).contains(&held), "{held}");
        assert_eq!(held + set.len(Split::Train), 200);
        let tiny = ProblemSet::new("t", problems[..2].to_vec());
        assert_eq!((tiny.len(Split::Train), tiny.len(Split::Heldout)), (1, 1));
    }
}
