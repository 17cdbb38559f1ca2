//! Training from a GGUF file (`model.source = "gguf"`): the transformers
//! fixture tiny-qwen2 written as llama.cpp lays a GGUF out (float32, so no
//! quantization error) trains exactly as its Hugging Face folder does, and
//! its checkpoints are Hugging Face folders with the chat template carried
//! over.

#[allow(dead_code)]
#[path = "../../policy/tests/common/gguf_writer.rs"]
mod gguf_writer;

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value;
use trainer::{train, Config, Model, Prompting, Silent};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/tiny-qwen2")
}

fn config(out_dir: &Path, name: &str, model: &str) -> Config {
    let text = format!(
        r#"
[run]
name = "{name}"
out_dir = "{}"
seed = 5
threads = 1

[model]
{model}

[tasks]
mixture = [{{ task = "add", level = 1 }}]

[sft]
steps = 2
batch_size = 4

[grpo]
steps = 1
batch_size = 2
group_size = 2
max_completion_length = 8

[eval]
every = 0
problems = 2
samples = 0
"#,
        out_dir.display()
    );
    Config::from_toml(&text, "t.toml", name, &[]).unwrap()
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_gguf_source_trains_like_its_folder_and_checkpoints_a_folder() {
    let out = tempfile::tempdir().unwrap();
    let gguf = out.path().join("tiny-qwen2.gguf");
    gguf_writer::folder_to_gguf(&fixture(), "qwen2").write(&gguf);

    let from_gguf = config(
        out.path(),
        "gguf",
        &format!("source = \"gguf\"\npath = \"{}\"", gguf.display()),
    );
    let from_folder = config(
        out.path(),
        "folder",
        &format!("source = \"local\"\npath = \"{}\"", fixture().display()),
    );
    let summary = train(&from_gguf, &mut Silent).unwrap();
    train(&from_folder, &mut Silent).unwrap();

    // The same weights, tokenizer and chat prompts: the same run.
    let (a, b) = (
        metrics(&summary.run_dir),
        metrics(&out.path().join("folder")),
    );
    assert_eq!(a.len(), 3);
    assert!(a[0]["loss"].is_number() && a[2]["reward"].is_number());
    for (x, y) in a.iter().zip(&b) {
        for key in ["loss", "grad_norm", "reward"] {
            assert_eq!(x.get(key), y.get(key), "{key}: {x} vs {y}");
        }
    }

    let checkpoint = summary.last_checkpoint.expect("a checkpoint");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(checkpoint.join(file).is_file(), "{file} missing");
    }
    let template = std::fs::read_to_string(checkpoint.join("chat_template.jinja")).unwrap();
    let original = std::fs::read_to_string(fixture().join("chat_template.jinja")).unwrap();
    assert_eq!(template, original);
    let model = Model::load(&checkpoint, Prompting::Plain, &Device::Cpu).unwrap();
    assert_eq!(
        model.policy.config.architecture,
        policy::Architecture::Qwen2
    );
    assert!(model.policy.config.tie_word_embeddings);
}

#[test]
fn a_missing_gguf_file_is_a_config_error() {
    let out = tempfile::tempdir().unwrap();
    let text = "[model]\nsource = \"gguf\"\npath = \"/no/such/model.gguf\"\n\
                [tasks]\nmixture = [{ task = \"add\", level = 1 }]\n";
    let error = Config::from_toml(text, "t.toml", "t", &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("model.path") && error.contains("/no/such/model.gguf"),
        "{error}"
    );
    let text = "[model]\nsource = \"gguf\"\n[tasks]\nmixture = [{ task = \"add\", level = 1 }]\n";
    let error = Config::from_toml(text, "t.toml", "t", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("model.path"), "{error}");
    drop(out);
}
