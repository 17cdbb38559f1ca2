//! What a pretrained chat model trains and is evaluated on, checked on
//! SmolLM2-135M-Instruct's GGUF (configs/smollm2-grpo.toml): the prompt goes
//! through the ChatML template with the configured system message and the
//! assistant's generation prompt, and a supervised target is the worked
//! solution followed by the template's end-of-turn token, so that SFT
//! examples, rollouts and evaluation prompts are exactly the chat the model
//! was tuned on.
//!
//! The model file comes from `scripts/fetch-smollm2.sh`
//! (`models/SmolLM2-135M-Instruct.Q4_1.gguf`, or `VERITY_SMOLLM2`); without
//! it the test passes with a notice unless `VERITY_REQUIRE_SMOLLM2=1`.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Device;
use tasks::{Mixture, Split};
use trainer::{Config, Model, Prompting};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_path() -> Option<PathBuf> {
    let path = match std::env::var_os("VERITY_SMOLLM2") {
        Some(path) => PathBuf::from(path),
        None => repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    if path.is_file() {
        return Some(path);
    }
    let required = std::env::var("VERITY_REQUIRE_SMOLLM2").is_ok_and(|v| v == "1");
    assert!(!required, "{} is missing", path.display());
    let _ = writeln!(
        std::io::stderr(),
        "notice: {} not found; skipped (run scripts/fetch-smollm2.sh)",
        path.display()
    );
    None
}

/// configs/smollm2-grpo.toml with `model.path` pointing at `path`.
fn shipped_config(path: &Path) -> Config {
    let file = repo_root().join("configs/smollm2-grpo.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let set = format!("model.path={}", path.display());
    Config::from_toml(&text, "smollm2-grpo.toml", "smollm2-grpo", &[set]).unwrap()
}

#[test]
fn chat_prompts_and_sft_targets_follow_smollm2s_template() {
    let Some(path) = model_path() else { return };
    let config = shipped_config(&path);
    let system = config.model.system_prompt.clone();
    assert!(!system.is_empty());
    let mixture = Mixture::from_specs(&config.tasks.mixture, Path::new(".")).unwrap();
    let model = Model::from_config(&config, &mixture, &Device::Cpu).unwrap();
    assert_eq!(
        model.prompting,
        Prompting::Chat {
            system_prompt: system.clone()
        }
    );

    let problem = mixture.draw(Split::Train, 0, 0).unwrap();
    let prompt = model.prompt_ids(&problem.prompt).unwrap();
    let want = format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
        problem.prompt
    );
    assert_eq!(model.tokenizer.decode(&prompt, false).unwrap(), want);
    let im_start = model.tokenizer.token_to_id("<|im_start|>").unwrap();
    let im_end = model.tokenizer.token_to_id("<|im_end|>").unwrap();
    // The control tokens are single ids, not their spelling in pieces.
    assert_eq!(prompt.iter().filter(|&&t| t == im_start).count(), 3);
    assert_eq!(prompt.iter().filter(|&&t| t == im_end).count(), 2);

    let target = model.completion_ids(&problem.solution).unwrap();
    assert_eq!(
        target.last(),
        Some(&im_end),
        "the turn ends with <|im_end|>"
    );
    assert_eq!(
        model.tokenizer.decode(&target, false).unwrap(),
        format!("{}<|im_end|>", problem.solution)
    );
    assert!(!target[..target.len() - 1].contains(&im_end));
    // Generation stops where the target ends.
    let stop = model.sampling(1.0, 1.0, 0, 8).stop_token_ids;
    assert!(stop.contains(&im_end), "{stop:?}");
    // The verifier reads the decoded target as a correct, well-formed answer.
    let verdict = problem.verify(&model.decode(&target).unwrap());
    assert!(verdict.format_ok && verdict.reward == 1.0, "{verdict:?}");
}

/// Every worked solution of the GRPO mixture, as a completion with its
/// end-of-turn token, fits in `grpo.max_completion_length` (which is also
/// the evaluation's budget), so neither rollouts nor evaluation cut a
/// solution the cold start taught.
#[test]
fn worked_solutions_fit_the_completion_budget() {
    let Some(path) = model_path() else { return };
    let config = shipped_config(&path);
    let budget = config.grpo.max_completion_length;
    let mixture = Mixture::from_specs(&config.tasks.mixture, Path::new(".")).unwrap();
    let model = Model::from_config(&config, &mixture, &Device::Cpu).unwrap();
    let mut longest = (0, String::new());
    for index in 0..400 {
        for split in [Split::Train, Split::Heldout] {
            let problem = mixture.draw(split, 1, index).unwrap();
            let n = model.completion_ids(&problem.solution).unwrap().len();
            if n > longest.0 {
                longest = (n, problem.solution.clone());
            }
        }
    }
    assert!(
        longest.0 <= budget,
        "{} tokens > max_completion_length {budget}: {}",
        longest.0,
        longest.1
    );
}
