//! Tokenizer parity with the reference fixtures (ids from Python's
//! `tokenizers`, renderings from transformers), character-level tokenizers,
//! real chat templates, and bad tokenizer files.

use std::path::{Path, PathBuf};

use policy::{ChatMessage, Error, Tokenizer};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(name)
}

fn reference(name: &str) -> Value {
    let path = fixture(name).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference.json parses")
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an id list")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// Printable ASCII then newline: the fixture tokenizer's alphabet, in its id order.
fn fixture_alphabet() -> String {
    (0x20u8..=0x7e).map(char::from).chain(['\n']).collect()
}

const FORMAT_TAGS: [&str; 4] = ["<think>", "</think>", "<answer>", "</answer>"];

#[test]
fn fixture_tokenizers_match_the_reference_ids() {
    for name in ["tiny-qwen2", "tiny-llama"] {
        let tokenizer = Tokenizer::from_dir(fixture(name)).unwrap();
        let reference = reference(name);
        let checks = &reference["tokenizer_checks"];
        assert_eq!(
            tokenizer.vocab_size() as u64,
            checks["vocab_size"].as_u64().unwrap()
        );
        for (token, id) in checks["special_token_ids"].as_object().unwrap() {
            assert_eq!(
                tokenizer.token_to_id(token),
                Some(id.as_u64().unwrap() as u32),
                "{name}: {token}"
            );
        }
        for key in ["space_token", "newline_token"] {
            let pair = checks[key].as_array().unwrap();
            let id = pair[1].as_u64().unwrap() as u32;
            assert_eq!(
                tokenizer.id_to_token(id).as_deref(),
                pair[0].as_str(),
                "{name}: {key}"
            );
        }

        let roundtrip = &checks["roundtrip_example"];
        let text = roundtrip["text"].as_str().unwrap();
        assert_eq!(
            tokenizer.encode(text, true).unwrap(),
            ids(&roundtrip["ids"]),
            "{name}"
        );
        assert_eq!(
            tokenizer.decode(&ids(&roundtrip["ids"]), false).unwrap(),
            text,
            "{name}"
        );

        for sequence in reference["sequences"].as_array().unwrap() {
            let text = sequence["text"].as_str().unwrap();
            assert_eq!(
                tokenizer.encode(text, true).unwrap(),
                ids(&sequence["input_ids"]),
                "{name}: {text:?}"
            );
            let continuation = &sequence["continuation"];
            let text = continuation["text"].as_str().unwrap();
            assert_eq!(
                tokenizer.encode(text, false).unwrap(),
                ids(&continuation["ids"]),
                "{name}: {text:?}"
            );
        }

        // generation_config.json lists [98, 96]; tokenizer_config.json's eos comes first anyway.
        assert_eq!(tokenizer.eos_ids(), &[98, 96], "{name}");
        assert_eq!(tokenizer.pad_id(), Some(96), "{name}");
        assert_eq!(
            tokenizer.bos_id(),
            None,
            "{name}: tokenizer_config.json has bos_token null"
        );
    }
}

#[test]
fn fixture_chat_template_renders_like_transformers() {
    for name in ["tiny-qwen2", "tiny-llama"] {
        let tokenizer = Tokenizer::from_dir(fixture(name)).unwrap();
        let example = &reference(name)["tokenizer_checks"]["chat_template_example"];
        let text = tokenizer
            .apply_chat_template(&[ChatMessage::user("2+2=?")], true)
            .unwrap();
        assert_eq!(text, example["text"].as_str().unwrap(), "{name}");
        assert_eq!(
            tokenizer.encode(&text, false).unwrap(),
            ids(&example["ids"]),
            "{name}"
        );

        let without_prompt = tokenizer
            .apply_chat_template(&[ChatMessage::user("2+2=?")], false)
            .unwrap();
        assert_eq!(without_prompt, "<|im_start|>user\n2+2=?<|im_end|>\n");
    }
}

#[test]
fn char_level_over_the_fixture_alphabet_is_the_fixture_tokenizer() {
    let built = Tokenizer::char_level(&fixture_alphabet(), &[]).unwrap();
    let fixture_tokenizer = Tokenizer::from_dir(fixture("tiny-qwen2")).unwrap();
    assert_eq!(built.vocab_size(), fixture_tokenizer.vocab_size());
    for id in 0..built.vocab_size() as u32 {
        assert_eq!(
            built.id_to_token(id),
            fixture_tokenizer.id_to_token(id),
            "id {id}"
        );
    }
    let reference = reference("tiny-qwen2");
    for sequence in reference["sequences"].as_array().unwrap() {
        let text = sequence["text"].as_str().unwrap();
        assert_eq!(
            built.encode(text, true).unwrap(),
            ids(&sequence["input_ids"]),
            "{text:?}"
        );
    }
    let example = &reference["tokenizer_checks"]["chat_template_example"];
    let prompt = built
        .apply_chat_template(&[ChatMessage::user("2+2=?")], true)
        .unwrap();
    assert_eq!(prompt, example["text"].as_str().unwrap());
    assert_eq!(built.eos_ids(), &[98]);
    assert_eq!(built.pad_id(), Some(96));
    assert_eq!(built.bos_id(), Some(96));
}

#[test]
fn char_level_format_tags_are_single_tokens_and_round_trip_exactly() {
    let alphabet = fixture_alphabet();
    let tokenizer = Tokenizer::char_level(&alphabet, &FORMAT_TAGS).unwrap();
    assert_eq!(tokenizer.vocab_size(), 96 + 3 + 4);
    for (offset, tag) in FORMAT_TAGS.iter().enumerate() {
        let id = 99 + offset as u32;
        assert_eq!(tokenizer.encode(tag, false).unwrap(), vec![id], "{tag}");
        assert_eq!(tokenizer.token_to_id(tag), Some(id));
    }
    assert_eq!(
        tokenizer
            .encode("<think>1+1</think><answer>2</answer><|im_end|>", false)
            .unwrap(),
        vec![99, 17, 11, 17, 100, 101, 18, 102, 98]
    );

    // Arbitrary text over the alphabet, tags and control tokens mixed in.
    let pieces: Vec<String> = alphabet
        .chars()
        .map(String::from)
        .chain(FORMAT_TAGS.iter().map(|t| t.to_string()))
        .chain(
            [
                "<|im_start|>",
                "<|im_end|>",
                "<|endoftext|>",
                "  ",
                "\n\n",
                "<",
                "think>",
            ]
            .map(String::from),
        )
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..300 {
        let len = rng.random_range(0..40);
        let text: String = (0..len)
            .map(|_| pieces[rng.random_range(0..pieces.len())].as_str())
            .collect();
        let ids = tokenizer.encode(&text, true).unwrap();
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), text, "ids {ids:?}");
        // Leading and trailing spaces survive too.
        let padded = format!(" {text} ");
        let ids = tokenizer.encode(&padded, false).unwrap();
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), padded);
    }

    // Ids past the vocabulary (a model's padded embedding rows) decode to nothing.
    assert_eq!(tokenizer.decode(&[17, 5000, 18], false).unwrap(), "12");

    // Skipping special tokens drops the control tokens and keeps the format tags.
    let ids = tokenizer
        .encode("<think>a b</think><answer>7</answer><|im_end|>", false)
        .unwrap();
    assert_eq!(
        tokenizer.decode(&ids, true).unwrap(),
        "<think>a b</think><answer>7</answer>"
    );
}

#[test]
fn tokenizers_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<policy::ChatTemplate>();
}

#[test]
fn char_level_drops_characters_outside_the_alphabet() {
    let tokenizer = Tokenizer::char_level("0123456789+-=", &FORMAT_TAGS).unwrap();
    let ids = tokenizer
        .encode("1+1=2 é x\n<answer>2</answer>", false)
        .unwrap();
    assert_eq!(
        tokenizer.decode(&ids, false).unwrap(),
        "1+1=2<answer>2</answer>"
    );
    // Ids follow the alphabet's order.
    assert_eq!(tokenizer.encode("0129", false).unwrap(), vec![0, 1, 2, 9]);
}

#[test]
fn char_level_rejects_bad_alphabets_and_tokens() {
    let message = |result: policy::Result<Tokenizer>| result.unwrap_err().to_string();
    assert!(message(Tokenizer::char_level("abc×", &[])).contains("'×'"));
    assert!(message(Tokenizer::char_level("", &[])).contains("empty"));
    assert!(message(Tokenizer::char_level("ab", &["<t>", "<t>"])).contains("<t>"));
    assert!(message(Tokenizer::char_level("ab", &["<|im_end|>"])).contains("<|im_end|>"));
    assert!(message(Tokenizer::char_level("ab", &["a"])).contains("\"a\""));
    assert!(message(Tokenizer::char_level("ab", &[""])).contains("empty"));
}

#[test]
fn saved_tokenizers_load_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let built = Tokenizer::char_level(&fixture_alphabet(), &FORMAT_TAGS).unwrap();
    built.save(dir.path()).unwrap();
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        assert!(dir.path().join(file).is_file(), "{file}");
    }
    let loaded = Tokenizer::from_dir(dir.path()).unwrap();
    let text = "<|im_start|>user\n12+3=?<|im_end|>\n<|im_start|>assistant\n<think>12+3=15</think><answer>15</answer><|im_end|>";
    assert_eq!(
        loaded.encode(text, true).unwrap(),
        built.encode(text, true).unwrap()
    );
    assert_eq!(loaded.vocab_size(), built.vocab_size());
    assert_eq!(loaded.eos_ids(), built.eos_ids());
    assert_eq!(loaded.pad_id(), built.pad_id());
    assert_eq!(loaded.bos_id(), built.bos_id());
    assert_eq!(loaded.special_tokens(), built.special_tokens());
    let messages = [ChatMessage::system("Be brief."), ChatMessage::user("1+1")];
    assert_eq!(
        loaded.apply_chat_template(&messages, true).unwrap(),
        built.apply_chat_template(&messages, true).unwrap()
    );

    // A loaded pretrained tokenizer saves and reloads the same way.
    let fixture_tokenizer = Tokenizer::from_dir(fixture("tiny-llama")).unwrap();
    let again = tempfile::tempdir().unwrap();
    fixture_tokenizer.save(again.path()).unwrap();
    std::fs::copy(
        fixture("tiny-llama").join("generation_config.json"),
        again.path().join("generation_config.json"),
    )
    .unwrap();
    let reloaded = Tokenizer::from_dir(again.path()).unwrap();
    assert_eq!(
        reloaded.encode(text, true).unwrap(),
        fixture_tokenizer.encode(text, true).unwrap()
    );
    assert_eq!(reloaded.eos_ids(), fixture_tokenizer.eos_ids());
    assert_eq!(
        reloaded.chat_template().unwrap().source(),
        fixture_tokenizer.chat_template().unwrap().source()
    );
}

/// A copy of the fixture tokenizer folder with `edit` applied to tokenizer.json's JSON.
fn edited_fixture(edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("tiny-qwen2").join("tokenizer.json")).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    edit(&mut json);
    std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
    dir
}

#[test]
fn a_merge_producing_a_token_missing_from_the_vocab_is_an_error_not_a_panic() {
    // Longer than every vocab token: tokenizers 0.23 panics on this one.
    let long = edited_fixture(|json| {
        json["model"]["merges"] = serde_json::json!([["<|endoftext|>", "<|im_start|>"]])
    });
    // Short: tokenizers itself would return an error.
    let short = edited_fixture(|json| json["model"]["merges"] = serde_json::json!(["a b"]));
    for dir in [long, short] {
        let error = Tokenizer::from_dir(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Tokenizer { .. }), "{message}");
        assert!(message.contains("tokenizer.json"), "{message}");
        assert!(message.contains("not in the vocab"), "{message}");
    }

    let unknown_part = edited_fixture(|json| json["model"]["merges"] = serde_json::json!(["a zz"]));
    let message = Tokenizer::from_dir(unknown_part.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("\"zz\""), "{message}");

    // A merge whose parts and result are all in the vocab loads and applies.
    let good = edited_fixture(|json| {
        json["model"]["vocab"]["ab"] = serde_json::json!(99);
        json["model"]["merges"] = serde_json::json!([["a", "b"]]);
    });
    let tokenizer = Tokenizer::from_dir(good.path()).unwrap();
    assert_eq!(tokenizer.encode("abc", false).unwrap(), vec![99, 67]);
}

#[test]
fn bad_tokenizer_folders_get_errors_naming_the_file() {
    let empty = tempfile::tempdir().unwrap();
    let message = Tokenizer::from_dir(empty.path()).unwrap_err().to_string();
    assert!(
        message.contains("tokenizer.json") && message.contains("not found"),
        "{message}"
    );

    let garbage = tempfile::tempdir().unwrap();
    std::fs::write(garbage.path().join("tokenizer.json"), "{\"model\": ").unwrap();
    let message = Tokenizer::from_dir(garbage.path()).unwrap_err().to_string();
    assert!(message.contains("tokenizer.json"), "{message}");

    let not_a_tokenizer =
        edited_fixture(|json| json["model"] = serde_json::json!({"type": "Nonsense"}));
    let message = Tokenizer::from_dir(not_a_tokenizer.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("tokenizer.json"), "{message}");

    let write_config = |dir: &Path, config: Value| {
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    };
    let dir = edited_fixture(|_| {});
    write_config(dir.path(), serde_json::json!({"eos_token": "<|nope|>"}));
    let message = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("tokenizer_config.json")
            && message.contains("eos_token")
            && message.contains("<|nope|>"),
        "{message}"
    );

    write_config(dir.path(), serde_json::json!({"pad_token": 5}));
    let message = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("tokenizer_config.json") && message.contains("pad_token"),
        "{message}"
    );

    write_config(
        dir.path(),
        serde_json::json!({"chat_template": "{% for m in messages %}"}),
    );
    let message = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("tokenizer_config.json") && message.contains("chat template"),
        "{message}"
    );

    write_config(dir.path(), serde_json::json!([]));
    let message = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("tokenizer_config.json") && message.contains("JSON object"),
        "{message}"
    );

    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [98, 1000]}"#,
    )
    .unwrap();
    let message = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("generation_config.json") && message.contains("1000"),
        "{message}"
    );

    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": 98}"#,
    )
    .unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tokenizer.eos_ids(), &[98]);
    assert_eq!(tokenizer.pad_id(), None);
    let message = tokenizer
        .apply_chat_template(&[ChatMessage::user("hi")], true)
        .unwrap_err()
        .to_string();
    assert!(message.contains("no chat_template"), "{message}");
}

#[test]
fn tokenizer_config_forms_of_special_tokens_and_templates() {
    let dir = edited_fixture(|_| {});
    // transformers 4 writes special tokens as AddedToken objects and may list named templates.
    let config = serde_json::json!({
        "bos_token": {"content": "<|endoftext|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
        "eos_token": "<|im_end|>",
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}"}
        ]
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tokenizer.bos_id(), Some(96));
    assert_eq!(tokenizer.pad_id(), None);
    let text = tokenizer
        .apply_chat_template(&[ChatMessage::user("hi")], false)
        .unwrap();
    assert_eq!(text, "<|endoftext|>[user]hi<|im_end|>");

    // chat_template.jinja wins over the config's template, as in transformers.
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ messages[0].content }}!",
    )
    .unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(
        tokenizer
            .apply_chat_template(&[ChatMessage::user("hi")], false)
            .unwrap(),
        "hi!"
    );

    let custom = tokenizer.with_chat_template("{{ eos_token }}").unwrap();
    assert_eq!(
        custom.apply_chat_template(&[], false).unwrap(),
        "<|im_end|>"
    );
}

/// Qwen2.5-Instruct's chat template, as its tokenizer_config.json stores it.
const QWEN25_CONFIG_TEMPLATE: &str = r#""{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n    {%- elif message.role == \"tool\" %}\n        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n""#;

#[test]
fn qwen25_chat_template_renders_as_in_transformers() {
    let dir = edited_fixture(|_| {});
    let config = format!(
        r#"{{"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": null, "chat_template": {QWEN25_CONFIG_TEMPLATE}}}"#
    );
    std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();

    // No system message: Qwen's default one is inserted.
    let prompt = tokenizer
        .apply_chat_template(&[ChatMessage::user("What is 12+3?")], true)
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nWhat is 12+3?<|im_end|>\n<|im_start|>assistant\n"
    );

    let conversation = [
        ChatMessage::system("Answer inside <answer></answer>."),
        ChatMessage::user("2*3?"),
        ChatMessage::assistant("<think>2*3=6</think><answer>6</answer>"),
        ChatMessage::user("And 2*4?"),
    ];
    let text = tokenizer.apply_chat_template(&conversation, false).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nAnswer inside <answer></answer>.<|im_end|>\n\
         <|im_start|>user\n2*3?<|im_end|>\n\
         <|im_start|>assistant\n<think>2*3=6</think><answer>6</answer><|im_end|>\n\
         <|im_start|>user\nAnd 2*4?<|im_end|>\n"
    );

    // Tools go through tojson, which prints like Python's json.dumps.
    let tools = serde_json::json!({"tools": [{"function": {"description": "Adds \"two\" numbers", "name": "add"}, "type": "function"}]});
    let with_tools = tokenizer
        .chat_template()
        .unwrap()
        .render_with(&[ChatMessage::user("hi")], true, &tools)
        .unwrap();
    assert!(
        with_tools.contains(
            "<tools>\n{\"function\": {\"description\": \"Adds \\\"two\\\" numbers\", \"name\": \"add\"}, \"type\": \"function\"}\n</tools>"
        ),
        "{with_tools}"
    );
    assert!(with_tools.starts_with("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n"));
    assert!(with_tools.ends_with(
        "</tool_call><|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ));
}

/// Qwen3's chat template: `namespace`, reversed slices, Python string methods.
const QWEN3_TEMPLATE: &str = r##"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}
"##;

#[test]
fn qwen3_chat_template_strips_old_reasoning_and_keeps_the_last() {
    let tokenizer = Tokenizer::char_level(&fixture_alphabet(), &FORMAT_TAGS)
        .unwrap()
        .with_chat_template(QWEN3_TEMPLATE)
        .unwrap();
    let conversation = [
        ChatMessage::user("1+1?"),
        ChatMessage::assistant("<think>\none plus one\n</think>\n\n2"),
        ChatMessage::user("2+2?"),
        ChatMessage::assistant("<think>two plus two</think>4"),
    ];
    // Reasoning of turns before the last user message is dropped; the last keeps it.
    assert_eq!(
        tokenizer.apply_chat_template(&conversation, false).unwrap(),
        "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n\
         <|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\ntwo plus two\n</think>\n\n4<|im_end|>\n"
    );
    let template = tokenizer.chat_template().unwrap();
    let no_thinking = template
        .render_with(
            &conversation[..1],
            true,
            &serde_json::json!({"enable_thinking": false}),
        )
        .unwrap();
    assert_eq!(
        no_thinking,
        "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    let thinking = template
        .render_with(
            &conversation[..1],
            true,
            &serde_json::json!({"enable_thinking": true}),
        )
        .unwrap();
    assert_eq!(
        thinking,
        "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn template_errors_are_reported_not_panicked() {
    let tokenizer = Tokenizer::char_level("ab", &[]).unwrap();
    let strict = tokenizer
        .clone()
        .with_chat_template(
            "{%- for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}\
             {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\
             {% endif %}{{ m.content }}{% endfor %}",
        )
        .unwrap();
    let message = strict
        .apply_chat_template(
            &[ChatMessage::assistant("a"), ChatMessage::user("b")],
            false,
        )
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("Conversation roles must alternate"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");

    let message = tokenizer
        .clone()
        .with_chat_template("{{ messages.nope() }}")
        .unwrap()
        .apply_chat_template(&[], false)
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("chat template:"), "{message}");

    let message = tokenizer
        .with_chat_template("{% if %}")
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("chat template:"), "{message}");
}
