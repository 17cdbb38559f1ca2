//! The embedded rhai interpreter that runs generated and model-written code.
//!
//! Everything a model writes is hostile input, so one shared [`Engine`] is
//! configured to bound every run: an operation budget (which ends `loop {}`
//! and any other unbounded computation), a call-depth limit (endless
//! recursion), parser depth limits (deeply nested source), and caps on string,
//! array and map sizes (unbounded allocation). There are no modules, no
//! `eval`, and `print`/`debug` go nowhere. Source longer than
//! [`MAX_SOURCE_BYTES`] is refused before it is tokenised. Every failure is a
//! value, never a panic, and the operation budget keeps every run short
//! without a wall clock. The call and depth limits together fit a 2 MiB
//! thread stack (the tests recurse at the deepest nesting the parser
//! allows), with rhai optimised as the workspace profiles build it.
//!
//! `cargo bench -p verity-tasks --bench sandbox` times the worst cases.
//!
//! Values cross the boundary as rhai literals (integers, `true`/`false`,
//! `"strings"`, `'c'` chars, `()` and `[arrays]`), parsed by
//! [`parse_literal`] without running any code, and come back in one canonical
//! printed form ([`canonical`]), so two values are equal exactly when their
//! canonical forms are.

use std::cell::Cell;
use std::fmt::Write;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    Array, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Scope, AST,
};

/// Longest program accepted, in bytes; longer text is refused unread.
pub(crate) const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// Operations one run (one program, or one function call) may perform.
pub(crate) const MAX_OPERATIONS: u64 = 100_000;
/// Deepest function-call nesting.
const MAX_CALL_LEVELS: usize = 32;
/// Deepest expression nesting the parser accepts (top level and in functions).
const MAX_EXPR_DEPTH: usize = 64;
/// Largest string, in bytes.
const MAX_STRING_BYTES: usize = 4096;
/// Largest array, counting nested elements.
const MAX_ARRAY_LEN: usize = 1024;
/// Largest object map.
const MAX_MAP_LEN: usize = 64;
/// Most variables alive at once.
const MAX_VARIABLES: usize = 128;
/// Most functions one program may define.
const MAX_FUNCTIONS: usize = 64;
/// Deepest nesting of arrays in a literal.
const MAX_LITERAL_DEPTH: usize = 16;
/// Longest error message kept in a reason, in characters.
const MAX_REASON_CHARS: usize = 120;

/// Why a program did not produce a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// The source was refused: too long, or it does not parse.
    Compile(String),
    /// The run hit a resource limit (operations, call depth, data size).
    Limit(String),
    /// The run raised an error (missing function, bad types, overflow...).
    Runtime(String),
}

impl Failure {
    /// A short reason for a verdict.
    pub(crate) fn reason(&self) -> String {
        match self {
            Failure::Compile(m) => format!("does not compile: {m}"),
            Failure::Limit(m) => format!("exceeded a sandbox limit: {m}"),
            Failure::Runtime(m) => format!("runtime error: {m}"),
        }
    }
}

/// The shared engine; building one registers every package, so it is built once.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // The standard packages, less `LanguageCorePackage`: its `sleep`
        // blocks the thread for any number of seconds, and `exit`,
        // `parse_json` and reflection are not needed.
        let mut engine = Engine::new_raw();
        engine
            .register_global_module(ArithmeticPackage::new().as_shared_module())
            .register_global_module(BasicStringPackage::new().as_shared_module())
            .register_global_module(BasicIteratorPackage::new().as_shared_module())
            .register_global_module(BasicFnPackage::new().as_shared_module())
            .register_global_module(LogicPackage::new().as_shared_module())
            .register_global_module(BasicMathPackage::new().as_shared_module())
            .register_global_module(BasicArrayPackage::new().as_shared_module())
            .register_global_module(BasicMapPackage::new().as_shared_module())
            .register_global_module(MoreStringPackage::new().as_shared_module());
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_EXPR_DEPTH)
            .set_max_string_size(MAX_STRING_BYTES)
            .set_max_array_size(MAX_ARRAY_LEN)
            .set_max_map_size(MAX_MAP_LEN)
            .set_max_variables(MAX_VARIABLES)
            .set_max_functions(MAX_FUNCTIONS)
            .on_progress(|_| spend_one())
            .on_print(|_| {})
            .on_debug(|_, _, _| {});
        engine.disable_symbol("eval");
        engine
    })
}

thread_local! {
    /// Operations the current run has performed, across every call frame.
    static SPENT: Cell<u64> = const { Cell::new(0) };
}

/// Count one operation of the current run; past the budget, stop it.
///
/// rhai's own operation limit is kept per call context, and a function
/// pointer called from a native function (`map`, `filter`, `sort`...) starts
/// a fresh one, so nested callbacks could multiply the budget without end.
/// This count sees every operation of the run, wherever it happens; and
/// since every operation past the budget fails at once, even a native
/// function that swallows its callback's error (`sort`) ends quickly.
fn spend_one() -> Option<Dynamic> {
    SPENT.with(|spent| {
        let n = spent.get() + 1;
        spent.set(n);
        (n > MAX_OPERATIONS).then_some(Dynamic::UNIT)
    })
}

/// A compiled program, ready to run or to have its functions called.
pub(crate) struct Program {
    ast: AST,
}

impl Program {
    /// Parse `source` within the sandbox limits.
    pub(crate) fn compile(source: &str) -> Result<Self, Failure> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(Failure::Compile(format!(
                "source is {} bytes, more than {MAX_SOURCE_BYTES}",
                source.len()
            )));
        }
        guard(|| {
            engine()
                .compile(source)
                .map(|ast| Program { ast })
                .map_err(|e| Failure::Compile(short(&e.to_string())))
        })
    }

    /// Whether the program defines `name` taking `arity` parameters.
    pub(crate) fn defines(&self, name: &str, arity: usize) -> bool {
        self.ast
            .iter_functions()
            .any(|f| f.name == name && f.params.len() == arity)
    }

    /// Run the top-level statements and return the value of the last one.
    pub(crate) fn run(&self) -> Result<Dynamic, Failure> {
        guard(|| {
            engine()
                .eval_ast_with_scope::<Dynamic>(&mut Scope::new(), &self.ast)
                .map_err(|e| classify(&e))
        })
    }

    /// Call function `name` with `args`, without running the top-level
    /// statements; each call gets the full operation budget.
    pub(crate) fn call(&self, name: &str, args: Vec<Dynamic>) -> Result<Dynamic, Failure> {
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        guard(|| {
            engine()
                .call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &self.ast, name, args)
                .map_err(|e| classify(&e))
        })
    }
}

/// Run `work`, turning a panic inside the interpreter into a failure. No
/// input is known to cause one; this keeps an interpreter bug from taking
/// the caller down with it.
/// It also starts the run's operation count.
fn guard<T>(work: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    SPENT.with(|spent| spent.set(0));
    std::panic::catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(Failure::Runtime("the interpreter panicked".to_string())))
}

/// Compile and run `source`, returning the canonical form of its final value.
pub(crate) fn run(source: &str) -> Result<String, Failure> {
    Program::compile(source)?.run().map(|v| canonical(&v))
}

/// Sort an evaluation error into a resource limit or an ordinary error.
fn classify(error: &EvalAltResult) -> Failure {
    let message = short(&error.to_string());
    match error.unwrap_inner() {
        EvalAltResult::ErrorTooManyOperations(..)
        | EvalAltResult::ErrorStackOverflow(..)
        | EvalAltResult::ErrorDataTooLarge(..)
        | EvalAltResult::ErrorTooManyVariables(..)
        | EvalAltResult::ErrorTerminated(..) => Failure::Limit(message),
        _ => Failure::Runtime(message),
    }
}

/// The first line of `message`, cut to a readable length.
fn short(message: &str) -> String {
    clip(message.lines().next().unwrap_or(""), MAX_REASON_CHARS)
}

/// `text` cut to at most `max_chars` characters, marked with `...` when cut.
pub(crate) fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max_chars).collect();
    cut.push_str("...");
    cut
}

/// The canonical printed form of a value: integers in decimal, `true`/`false`,
/// strings and chars quoted with `\\`, `\"`, `\n`, `\t`, `\r` escaped, `()`,
/// arrays as `[1, 2]`, maps as `#{"k": v}` in key order. Other types print as
/// `<type>`, which no literal can equal.
pub(crate) fn canonical(value: &Dynamic) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Dynamic, out: &mut String) {
    if let Ok(i) = value.as_int() {
        let _ = write!(out, "{i}");
    } else if let Ok(b) = value.as_bool() {
        out.push_str(if b { "true" } else { "false" });
    } else if value.is_unit() {
        out.push_str("()");
    } else if let Ok(c) = value.as_char() {
        out.push('\'');
        push_escaped(c, '\'', out);
        out.push('\'');
    } else if let Some(text) = value.read_lock::<ImmutableString>() {
        push_quoted(&text, out);
    } else if let Some(items) = value.read_lock::<Array>() {
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_canonical(item, out);
        }
        out.push(']');
    } else if let Some(map) = value.read_lock::<Map>() {
        out.push_str("#{");
        for (i, (key, item)) in map.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_quoted(key, out);
            out.push_str(": ");
            write_canonical(item, out);
        }
        out.push('}');
    } else {
        let _ = write!(out, "<{}>", value.type_name());
    }
}

fn push_quoted(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        push_escaped(c, '"', out);
    }
    out.push('"');
}

fn push_escaped(c: char, quote: char, out: &mut String) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c => out.push(c),
    }
}

/// Parse a rhai literal (see the module docs) into a value without running
/// any code, so an answer can never be a program that computes itself.
/// Integers must be in printed form (`7`, not `007`), so each value has one
/// spelling up to whitespace. Surrounding whitespace is ignored; anything
/// else is `None`.
pub(crate) fn parse_literal(text: &str) -> Option<Dynamic> {
    let mut parser = LiteralParser {
        rest: text.trim_start(),
    };
    let value = parser.value(0)?;
    parser.rest.trim().is_empty().then_some(value)
}

/// A recursive-descent reader over the unread remainder of a literal.
struct LiteralParser<'a> {
    rest: &'a str,
}

impl LiteralParser<'_> {
    fn value(&mut self, depth: usize) -> Option<Dynamic> {
        if depth > MAX_LITERAL_DEPTH {
            return None;
        }
        self.skip_space();
        let first = self.rest.chars().next()?;
        match first {
            '[' => self.array(depth),
            '"' => self.string().map(Dynamic::from),
            '\'' => self.char_literal().map(Dynamic::from),
            '(' => self.eat("()").then_some(Dynamic::UNIT),
            '-' | '0'..='9' => self.integer().map(Dynamic::from),
            _ if self.eat_word("true") => Some(Dynamic::TRUE),
            _ if self.eat_word("false") => Some(Dynamic::FALSE),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<Dynamic> {
        self.eat("[");
        let mut items = Array::new();
        loop {
            self.skip_space();
            if self.eat("]") {
                return Some(Dynamic::from_array(items));
            }
            if items.len() >= MAX_ARRAY_LEN {
                return None;
            }
            items.push(self.value(depth + 1)?);
            self.skip_space();
            if !self.eat(",") {
                self.skip_space();
                return self.eat("]").then(|| Dynamic::from_array(items));
            }
        }
    }

    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat("-");
        let digits = self.rest.len()
            - self
                .rest
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        if digits == 0 {
            return None;
        }
        let (number, rest) = self.rest.split_at(digits);
        // Integers are written as rhai prints them: no leading zeros, no `-0`.
        if (number.starts_with('0') && digits > 1) || (negative && number == "0") {
            return None;
        }
        self.rest = rest;
        let text = if negative {
            format!("-{number}")
        } else {
            number.to_string()
        };
        text.parse().ok()
    }

    fn string(&mut self) -> Option<ImmutableString> {
        self.eat("\"");
        let mut text = String::new();
        loop {
            let c = self.next_char()?;
            match c {
                '"' => return Some(text.into()),
                '\\' => text.push(self.escape()?),
                c => text.push(c),
            }
        }
    }

    fn char_literal(&mut self) -> Option<char> {
        self.eat("'");
        let c = match self.next_char()? {
            '\\' => self.escape()?,
            '\'' => return None,
            c => c,
        };
        self.eat("'").then_some(c)
    }

    fn escape(&mut self) -> Option<char> {
        match self.next_char()? {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            c @ ('\\' | '"' | '\'') => Some(c),
            _ => None,
        }
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.rest.chars().next()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(c)
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let Some(rest) = self.rest.strip_prefix(word) else {
            return false;
        };
        if rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
            return false;
        }
        self.rest = rest;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(source: &str) {
        match run(source) {
            Err(Failure::Limit(_)) => {}
            other => panic!("expected a limit failure for {source:?}, got {other:?}"),
        }
    }

    #[test]
    fn runs_a_program_to_its_final_value() {
        assert_eq!(run("let x = 3; x * 4 + 1").as_deref(), Ok("13"));
        assert_eq!(run("[1, 2] + [3]").as_deref(), Ok("[1, 2, 3]"));
        assert_eq!(
            run(r#"let s = "a\"b"; s + "\n""#).as_deref(),
            Ok(r#""a\"b\n""#)
        );
        assert_eq!(run("'x'").as_deref(), Ok("'x'"));
        assert_eq!(run("let x = 1;").as_deref(), Ok("()"));
        assert_eq!(
            run("#{b: 1, a: [true]}").as_deref(),
            Ok(r#"#{"a": [true], "b": 1}"#)
        );
    }

    #[test]
    fn endless_loops_and_recursion_hit_limits() {
        limit("loop {}");
        limit("while true { let x = 1; }");
        limit("let i = 0; loop { i += 1; }");
        limit("for i in 0..1000000000000 {}");
        limit("fn f(n) { f(n + 1) } f(0)");
        limit("fn f(n) { f(n) + f(n) } f(0)");
        limit("fn a(n) { b(n) } fn b(n) { a(n) } a(1)");
        // `sort` swallows its comparator's errors; the shared count still ends it.
        limit("let xs = []; for i in 0..900 { xs.push(i); } xs.sort(|a, b| { loop {} }); xs.len()");
        limit("[1, 2].map(|x| { let i = 0; while true { i += 1; } })");
        // Callbacks from native functions share the one budget.
        let big = "fn big() { let a = []; for i in 0..300 { a.push(i); } a }";
        limit(&format!(
            "{big} big().map(|x| {{ let i = 0; while i < 5000 {{ i += 1; }} x }})"
        ));
        limit(&format!(
            "{big} big().map(|x| big().map(|y| big().map(|z| z)))"
        ));
        limit(&format!(
            "{big} big().filter(|x| big().sort(|a, b| {{ loop {{}} }}) == ())"
        ));
    }

    #[test]
    fn deepest_accepted_nesting_recurses_without_overflowing_the_stack() {
        // The parser's depth limit bounds each frame; the call limit bounds
        // the frames; together they must fit a 2 MiB test-thread stack.
        let mut deepest = 0;
        for depth in 1..64 {
            let wrap = |open: &str, close: &str| {
                format!(
                    "fn f(n) {{ {}f(n + 1){} }} f(0)",
                    open.repeat(depth),
                    close.repeat(depth)
                )
            };
            for source in [
                wrap("(", ")"),
                wrap("[", "]"),
                wrap("1 + (", ")"),
                wrap("if true { ", "}"),
            ] {
                match run(&source) {
                    Err(Failure::Limit(_)) => deepest = deepest.max(depth),
                    Err(Failure::Compile(_)) => {}
                    other => panic!("{source}: {other:?}"),
                }
            }
        }
        assert!(
            deepest >= 10,
            "legitimate nesting must compile, got {deepest}"
        );
    }

    #[test]
    fn unbounded_allocation_hits_limits() {
        limit(r#"let s = "x"; loop { s += s; }"#);
        limit(r#"let s = "x"; s.pad(100000000, "y"); s"#);
        limit("let a = []; loop { a.push(1); }");
        limit("let a = [1]; loop { a += a; }");
        limit("let a = []; a.pad(100000000, 0); a");
        limit("let a = [[1,2,3,4,5,6,7,8]]; loop { a.push(a); }");
        limit("let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }");
        limit("let a = []; loop { a = [a]; }");
        limit(r#"let a = []; loop { a.push("abcdefghijklmnopqrstuvwxyz"); }"#);
    }

    #[test]
    fn deeply_nested_values_print() {
        let program = Program::compile("fn f(n) { let a = []; for i in 0..n { a = [a]; } a }")
            .expect("compiles");
        let value = program
            .call("f", vec![Dynamic::from(1000_i64)])
            .expect("within limits");
        let printed = canonical(&value);
        assert_eq!(printed.len(), 2002);
        assert!(printed.starts_with("[[[") && printed.ends_with("]]]"));
    }

    #[test]
    fn hostile_source_is_refused() {
        let parens = "(".repeat(10 * 1024 * 1024);
        assert!(matches!(run(&parens), Err(Failure::Compile(_))));
        let nested = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(run(&nested), Err(Failure::Compile(_))));
        let blocks = format!("{}1{}", "{".repeat(5000), "}".repeat(5000));
        assert!(matches!(run(&blocks), Err(Failure::Compile(_))));
        let arrays = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(run(&arrays), Err(Failure::Compile(_))));
        let unary = format!("{}1", "-".repeat(8000));
        assert!(run(&unary).is_err());
        assert!(matches!(run("fn ("), Err(Failure::Compile(_))));
        assert!(matches!(run("eval(\"1\")"), Err(Failure::Compile(_))));
        assert!(matches!(
            run("import \"x\" as y; 1"),
            Err(Failure::Compile(_))
        ));
    }

    #[test]
    fn runtime_errors_are_values() {
        assert!(matches!(run("missing(1)"), Err(Failure::Runtime(_))));
        assert!(matches!(run("1 / 0"), Err(Failure::Runtime(_))));
        assert!(matches!(
            run("9223372036854775807 + 1"),
            Err(Failure::Runtime(_))
        ));
        assert!(matches!(run("[1][5]"), Err(Failure::Runtime(_))));
        assert!(matches!(run("throw 3"), Err(Failure::Runtime(_))));
        assert!(run("let f = Fn(\"eval\"); f.call(\"1\")").is_err());
        assert_eq!(run("print(\"hi\"); debug(2); 5").as_deref(), Ok("5"));
        for blocked in ["sleep(100000)", "exit(1)", "parse_json(\"[1]\")"] {
            assert!(
                matches!(run(blocked), Err(Failure::Runtime(_))),
                "{blocked}"
            );
        }
    }

    #[test]
    fn calls_a_defined_function() {
        let program =
            Program::compile("fn add(a, b) { a + b } fn neg(x) { -x } loop {}").expect("compiles");
        assert!(program.defines("add", 2));
        assert!(!program.defines("add", 1));
        let sum = program.call("add", vec![Dynamic::from(2_i64), Dynamic::from(5_i64)]);
        assert_eq!(sum.map(|v| canonical(&v)).as_deref(), Ok("7"));
        assert!(matches!(
            program.call("nope", vec![]),
            Err(Failure::Runtime(_))
        ));
    }

    #[test]
    fn literals_round_trip_through_canonical_form() {
        for text in [
            "0",
            "-17",
            "true",
            "false",
            "()",
            "'a'",
            r"'\''",
            r#""a \"q\" \\ \n\t\r é""#,
            "[]",
            r#"[1, [2, "x"], [], 'c', false]"#,
        ] {
            let value = parse_literal(text).expect(text);
            assert_eq!(canonical(&value), text);
            assert_eq!(run(text).as_deref(), Ok(text), "rhai agrees on {text}");
        }
        assert_eq!(
            parse_literal(" [ 1 ,2, ] ")
                .map(|v| canonical(&v))
                .as_deref(),
            Some("[1, 2]")
        );
    }

    #[test]
    fn non_literals_are_rejected() {
        for text in [
            "",
            "1 + 2",
            "x",
            "[1, 2",
            "\"open",
            "'ab'",
            "truex",
            "99999999999999999999",
            "007",
            "00",
            "-0",
            "[01]",
            "--1",
            "[1] [2]",
            "#{a: 1}",
        ] {
            assert!(parse_literal(text).is_none(), "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_literal(&deep).is_none());
    }
}
