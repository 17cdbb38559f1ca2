//! Weights in and out: save/load round trips (Qwen3 included), sharded
//! checkpoints, and errors that name what is wrong.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::model_dir;
use policy::{save_weights, Architecture, ModelConfig, Policy, CONFIG_FILE, WEIGHTS_INDEX_FILE};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("verity-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn logits(policy: &Policy) -> Vec<f32> {
    let ids = Tensor::new(&[[1u32, 5, 9, 2, 7]], &Device::Cpu).unwrap();
    let out = policy.model.forward(&ids, None, None).unwrap();
    out.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn copy_fixture(name: &str, to: &Path) {
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(model_dir(name).join(file), to.join(file)).unwrap();
    }
}

#[test]
fn qwen3_builds_runs_and_round_trips() {
    let mut cfg = ModelConfig::new(Architecture::Qwen3, 30, 32, 40, 2, 4, 2);
    cfg.head_dim = 12; // explicit, not hidden / heads
    cfg.eos_token_ids = vec![2, 3];
    let policy = Policy::random(&cfg, 3, &Device::Cpu).unwrap();
    let names: Vec<String> = policy.named_vars().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"model.layers.1.self_attn.k_norm.weight".to_string()));
    let q = policy
        .named_vars()
        .into_iter()
        .find(|(n, _)| n == "model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .1;
    assert_eq!(q.dims(), [48, 32]);
    let ids = Tensor::new(&[[1u32, 2, 3], [4, 5, 6]], &Device::Cpu).unwrap();
    assert_eq!(
        policy.model.forward(&ids, None, None).unwrap().dims(),
        [2, 3, 30]
    );

    let dir = temp_dir("qwen3");
    policy.save(&dir).unwrap();
    let back = Policy::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(back.config, policy.config);
    assert_eq!(logits(&back), logits(&policy));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(json["architectures"][0], "Qwen3ForCausalLM");
    assert_eq!(json["head_dim"], 12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fixtures_round_trip_through_save() {
    for name in ["tiny-qwen2", "tiny-llama"] {
        let policy = Policy::load(model_dir(name), &Device::Cpu).unwrap();
        let dir = temp_dir(name);
        policy.save(&dir).unwrap();
        let back = Policy::load(&dir, &Device::Cpu).unwrap();
        assert_eq!(logits(&back), logits(&policy), "{name}");
        // Same tensor names and metadata as transformers writes.
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
        let original = std::fs::read(model_dir(name).join("model.safetensors")).unwrap();
        let (_, original_meta) = safetensors::SafeTensors::read_metadata(&original).unwrap();
        let mut ours: Vec<_> = meta.tensors().keys().cloned().collect();
        let mut theirs: Vec<_> = original_meta.tensors().keys().cloned().collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{name}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn loads_sharded_checkpoints() {
    let policy = Policy::load(model_dir("tiny-llama"), &Device::Cpu).unwrap();
    let dir = temp_dir("sharded");
    std::fs::copy(
        model_dir("tiny-llama").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let vars = policy.named_vars();
    let (first, second) = vars.split_at(vars.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (shard, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let tensors: Vec<(String, Tensor)> = part
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        save_weights(&tensors, &dir.join(shard)).unwrap();
        for (n, _) in part {
            weight_map.insert(n.clone(), shard.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join(WEIGHTS_INDEX_FILE), index.to_string()).unwrap();
    let back = Policy::load(&dir, &Device::Cpu).unwrap();
    assert_eq!(logits(&back), logits(&policy));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_or_misshapen_tensors_are_named() {
    let dir = temp_dir("missing");
    copy_fixture("tiny-llama", &dir);
    let policy = Policy::load(&dir, &Device::Cpu).unwrap();
    let mut tensors: HashMap<String, Tensor> = policy
        .named_vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    tensors.remove("model.layers.1.mlp.up_proj.weight");
    save_weights(
        &tensors.clone().into_iter().collect::<Vec<_>>(),
        &dir.join("model.safetensors"),
    )
    .unwrap();
    let err = Policy::load(&dir, &Device::Cpu).err().unwrap().to_string();
    assert!(
        err.contains("missing tensor 'model.layers.1.mlp.up_proj.weight'"),
        "{err}"
    );
    assert!(err.contains("model.safetensors"), "{err}");

    tensors.insert(
        "model.layers.1.mlp.up_proj.weight".into(),
        Tensor::zeros((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    save_weights(
        &tensors.into_iter().collect::<Vec<_>>(),
        &dir.join("model.safetensors"),
    )
    .unwrap();
    let err = Policy::load(&dir, &Device::Cpu).err().unwrap().to_string();
    assert!(
        err.contains("'model.layers.1.mlp.up_proj.weight' has shape [3, 3]"),
        "{err}"
    );
    assert!(err.contains("[176, 64]"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_architectures_and_broken_files_are_named() {
    let dir = temp_dir("broken");
    copy_fixture("tiny-qwen2", &dir);
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("Qwen2ForCausalLM", "MambaForCausalLM"),
    )
    .unwrap();
    let err = Policy::load(&dir, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("MambaForCausalLM"), "{err}");

    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    let err = Policy::load(&dir, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("config.json"), "{err}");

    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"garbage").unwrap();
    let err = Policy::load(&dir, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let err = Policy::load(&dir, &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
