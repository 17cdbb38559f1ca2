//! Chat templates: the Jinja programs Hugging Face models ship to turn a
//! conversation into prompt text, rendered with minijinja the way
//! transformers renders them.
//!
//! transformers renders with Jinja2 (`trim_blocks`, `lstrip_blocks`, no
//! auto-escaping) plus three helpers: `raise_exception`, `strftime_now` and a
//! `tojson` that is Python's `json.dumps`. Templates call Python string and
//! dict methods (`content.startswith(..)`, `.split`, `.strip`, `.items()`),
//! which minijinja-contrib's pycompat layer supplies.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::error::{Error, Result};

const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation: a role (`system`, `user`, `assistant`, ...) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Who speaks: `system`, `user`, `assistant` or whatever the template knows.
    pub role: String,
    /// What they say.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The special token strings a template may print (`{{ bos_token }}`).
///
/// Unset tokens are left undefined in the template, as transformers leaves them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token text.
    pub bos: Option<String>,
    /// End-of-sequence token text.
    pub eos: Option<String>,
    /// Padding token text.
    pub pad: Option<String>,
    /// Unknown-token text.
    pub unk: Option<String>,
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    source: String,
    special_tokens: SpecialTokens,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; syntax errors are reported here, not at render time.
    pub fn new(source: &str, special_tokens: SpecialTokens) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())
            .map_err(|e| Error::ChatTemplate(one_line(&e)))?;
        Ok(Self {
            env: Arc::new(env),
            source: source.to_owned(),
            special_tokens,
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The special token strings the template sees.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the
    /// assistant's reply begins.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, add_generation_prompt, &serde_json::Value::Null)
    }

    /// Like [`ChatTemplate::render`], with extra template variables from a JSON
    /// object (`{"enable_thinking": false}`, `{"tools": [...]}`); they override
    /// the defaults (`tools` and `documents` are none, as in transformers).
    /// Object keys reach the template in serde_json's order (sorted), where
    /// Python would keep the caller's order.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &serde_json::Value,
    ) -> Result<String> {
        let mut context: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from_serialize(messages)),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
            ("tools".into(), Value::from(())),
            ("documents".into(), Value::from(())),
        ];
        let tokens = &self.special_tokens;
        for (name, token) in [
            ("bos_token", &tokens.bos),
            ("eos_token", &tokens.eos),
            ("pad_token", &tokens.pad),
            ("unk_token", &tokens.unk),
        ] {
            if let Some(token) = token {
                context.push((name.into(), Value::from(token.as_str())));
            }
        }
        match extra {
            serde_json::Value::Null => {}
            serde_json::Value::Object(vars) => {
                for (name, value) in vars {
                    if name == "messages" || name == "add_generation_prompt" {
                        return Err(Error::ChatTemplate(format!(
                            "extra variable `{name}` would replace an argument of render"
                        )));
                    }
                    context.retain(|(existing, _)| existing != name);
                    context.push((name.clone(), Value::from_serialize(value)));
                }
            }
            other => {
                return Err(Error::ChatTemplate(format!(
                    "extra template variables must be a JSON object, got {other}"
                )))
            }
        }
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::ChatTemplate(one_line(&e)))?;
        template
            .render(Value::from_iter(context))
            .map_err(|e| Error::ChatTemplate(one_line(&e)))
    }
}

/// A minijinja error on one line, with the cause chain (errors raised inside
/// filters carry the interesting part there).
fn one_line(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// `raise_exception(message)`: templates call it to reject a conversation.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised: {message}"),
    ))
}

/// `strftime_now(format)`: the current UTC time, formatted like Python's
/// `strftime` for the directives templates use.
fn strftime_now(format: String) -> std::result::Result<Value, minijinja::Error> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(seconds, &format).map(Value::from)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn format_utc(unix_seconds: u64, format: &str) -> std::result::Result<String, minijinja::Error> {
    let days = (unix_seconds / 86_400) as i64;
    let seconds_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60,
    );
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let directive = chars.next().ok_or_else(|| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("strftime_now: format {format:?} ends with %"),
            )
        })?;
        let _ = match directive {
            'Y' => write!(out, "{year}"),
            'y' => write!(out, "{:02}", year.rem_euclid(100)),
            'm' => write!(out, "{month:02}"),
            'd' => write!(out, "{day:02}"),
            'e' => write!(out, "{day:2}"),
            'j' => write!(out, "{day_of_year:03}"),
            'B' => write!(out, "{month_name}"),
            'b' | 'h' => write!(out, "{}", &month_name[..3]),
            'A' => write!(out, "{}", WEEKDAYS[weekday]),
            'a' => write!(out, "{}", &WEEKDAYS[weekday][..3]),
            'H' => write!(out, "{hour:02}"),
            'I' => write!(out, "{:02}", (hour + 11) % 12 + 1),
            'p' => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{minute:02}"),
            'S' => write!(out, "{second:02}"),
            '%' => write!(out, "%"),
            other => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive %{other} in {format:?}"),
                ))
            }
        };
    }
    Ok(out)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * mp + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// JSON layout options of Python's `json.dumps`.
struct JsonStyle {
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

/// `tojson`: Python's `json.dumps(value, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`, as transformers defines it,
/// so tool schemas print exactly as they do there (`{"a": 1}`, not `{"a":1}`).
fn tojson(
    value: &Value,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.clamp(0, 64) as usize)),
            (None, Some(s)) => Some(s.to_owned()),
            _ => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent must be a number or a string, got {v}"),
                ))
            }
        },
    };
    let (item_separator, key_separator) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(pair) if pair.len() == 2 => (pair[0].clone(), pair[1].clone()),
        Some(pair) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: separators must be two strings, got {}", pair.len()),
            ))
        }
        None if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        None => (", ".to_owned(), ": ".to_owned()),
    };
    let style = JsonStyle {
        indent,
        item_separator,
        key_separator,
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> std::result::Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            let entries = keys
                .into_iter()
                .map(|key| {
                    let item = value.get_item(&key)?;
                    Ok((key, item))
                })
                .collect::<std::result::Result<Vec<_>, minijinja::Error>>()?;
            write_container(out, ('{', '}'), entries.len(), style, depth, |out, i| {
                let (key, item) = &entries[i];
                write_json_key(out, key, style);
                out.push_str(&style.key_separator);
                write_json(out, item, style, depth + 1)
            })?;
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), items.len(), style, depth, |out, i| {
                write_json(out, &items[i], style, depth + 1)
            })?;
        }
        _ => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: cannot serialize a {} value", value.kind()),
            ))
        }
    }
    Ok(())
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        out.push_str(&value.to_string());
        return;
    }
    match f64::try_from(value.clone()) {
        Ok(x) if x.is_nan() => out.push_str("NaN"),
        Ok(x) if x.is_infinite() => out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" }),
        _ => out.push_str(&value.to_string()),
    }
}

fn write_json_key(out: &mut String, key: &Value, style: &JsonStyle) {
    // Python turns non-string keys into their JSON text ("1", "true", "null").
    match key.as_str() {
        Some(s) => write_json_string(out, s, style),
        None => {
            let mut text = String::new();
            match key.kind() {
                ValueKind::Bool => text.push_str(if key.is_true() { "true" } else { "false" }),
                ValueKind::None | ValueKind::Undefined => text.push_str("null"),
                _ => write_number(&mut text, key),
            }
            write_json_string(out, &text, style);
        }
    }
}

fn write_container(
    out: &mut String,
    (open, close): (char, char),
    len: usize,
    style: &JsonStyle,
    depth: usize,
    mut write_item: impl FnMut(&mut String, usize) -> std::result::Result<(), minijinja::Error>,
) -> std::result::Result<(), minijinja::Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&style.item_separator);
        }
        if let Some(indent) = &style.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth + 1));
        }
        write_item(out, i)?;
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(depth));
    }
    out.push(close);
    Ok(())
}

fn write_json_string(out: &mut String, s: &str, style: &JsonStyle) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, extra: serde_json::Value) -> Result<String> {
        ChatTemplate::new(source, SpecialTokens::default())?.render_with(&[], false, &extra)
    }

    #[test]
    fn dates_format_like_python_strftime() {
        assert_eq!(
            format_utc(0, "%Y-%m-%d %H:%M:%S %a %A %j").unwrap(),
            "1970-01-01 00:00:00 Thu Thursday 001"
        );
        // 2000-02-29 12:34:56, a leap day.
        assert_eq!(
            format_utc(951_827_696, "%d %b %Y, %B %e %y %I%p").unwrap(),
            "29 Feb 2000, February 29 00 12PM"
        );
        // 2024-12-31 23:59:59: day 366 of a leap year.
        assert_eq!(
            format_utc(1_735_689_599, "%j %H %M %S %% %I %p").unwrap(),
            "366 23 59 59 % 11 PM"
        );
        for days in [-1000, 0, 59, 60, 365, 11_016, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert!(format_utc(0, "%Q").is_err());
        assert!(format_utc(0, "50%").is_err());
        let today = render("{{ strftime_now('%Y') }}", serde_json::Value::Null).unwrap();
        assert!(
            today.parse::<u32>().is_ok_and(|year| year >= 2024),
            "{today}"
        );
    }

    #[test]
    fn tojson_prints_like_python_json_dumps() {
        let data = serde_json::json!({"data": {"z": 1, "a": [1, 2.5, null, true], "s": "é\"\n\u{1}", "e": {}, "l": []}});
        // serde_json objects arrive with their keys sorted.
        assert_eq!(
            render("{{ data | tojson }}", data.clone()).unwrap(),
            r#"{"a": [1, 2.5, null, true], "e": {}, "l": [], "s": "é\"\n\u0001", "z": 1}"#
        );
        assert_eq!(
            render("{{ data.a | tojson(indent=2) }}", data.clone()).unwrap(),
            "[\n  1,\n  2.5,\n  null,\n  true\n]"
        );
        assert_eq!(
            render(
                "{{ data | tojson(sort_keys=true, separators=[',', ':']) }}",
                data.clone()
            )
            .unwrap(),
            r#"{"a":[1,2.5,null,true],"e":{},"l":[],"s":"é\"\n\u0001","z":1}"#
        );
        assert_eq!(
            render("{{ data.s | tojson(ensure_ascii=true) }}", data.clone()).unwrap(),
            r#""\u00e9\"\n\u0001""#
        );
        // Dicts built in the template keep their order, as in Python.
        assert_eq!(
            render("{{ {'b': 1, 'a': 2} | tojson }}", serde_json::Value::Null).unwrap(),
            r#"{"b": 1, "a": 2}"#
        );
        assert!(render("{{ data | tojson(bogus=1) }}", data).is_err());
    }

    #[test]
    fn python_string_methods_and_special_tokens_are_available() {
        let tokens = SpecialTokens {
            bos: Some("<s>".into()),
            eos: Some("</s>".into()),
            pad: None,
            unk: None,
        };
        let template = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}{{ m.content.strip().upper() }}|{{ m.content.startswith(' a') }}|{{ m.role.split('s')[0] }}{% endfor %}{{ pad_token is defined }}{{ eos_token }}",
            tokens,
        )
        .unwrap();
        // Booleans print as Python prints them.
        assert_eq!(
            template
                .render(&[ChatMessage::user(" ab ")], false)
                .unwrap(),
            "<s>AB|True|uFalse</s>"
        );
    }

    #[test]
    fn extra_variables_must_be_an_object_without_the_reserved_names() {
        assert!(render("x", serde_json::json!([1])).is_err());
        let error = render("x", serde_json::json!({"messages": []}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("messages"), "{error}");
        assert_eq!(
            render("{{ tools is none }}{{ x }}", serde_json::json!({"x": 3})).unwrap(),
            "True3"
        );
    }
}
