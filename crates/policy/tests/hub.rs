//! Hub repos resolved from a hub cache built in a temporary folder from the
//! fixtures. No test here uses the network: the endpoint points at a closed
//! local port, so an unintended download fails instead of reaching out.

use std::path::{Path, PathBuf};

use policy::{hub_model_dir, resolve_model_dir, HubOptions, Tokenizer};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(name)
}

fn options(cache_dir: &Path, offline: bool) -> HubOptions {
    HubOptions {
        revision: "main".into(),
        offline,
        cache_dir: cache_dir.to_owned(),
        endpoint: Some("http://127.0.0.1:9".into()),
        progress: false,
    }
}

/// Lays a fixture folder out as huggingface_hub caches a repo:
/// `models--org--name/{blobs/<hash>, snapshots/<commit>/<file> -> blob, refs/main}`.
fn cache_repo(cache_dir: &Path, repo_id: &str, fixture_name: &str, skip: &[&str]) -> PathBuf {
    let repo_dir = cache_dir.join(format!("models--{}", repo_id.replace('/', "--")));
    let blobs = repo_dir.join("blobs");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs").join("main"), COMMIT).unwrap();
    for entry in std::fs::read_dir(fixture(fixture_name)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name == "reference.json" || skip.contains(&name.as_str()) {
            continue;
        }
        let blob = blobs.join(format!("blob-{name}"));
        std::fs::copy(&path, &blob).unwrap();
        link(&blob, &snapshot.join(&name));
    }
    snapshot
}

#[cfg(unix)]
fn link(blob: &Path, pointer: &Path) {
    std::os::unix::fs::symlink(blob, pointer).unwrap();
}

#[cfg(not(unix))]
fn link(blob: &Path, pointer: &Path) {
    std::fs::copy(blob, pointer).unwrap();
}

#[test]
fn a_cached_repo_resolves_offline_to_its_snapshot() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = cache_repo(cache.path(), "verity/tiny-qwen2", "tiny-qwen2", &[]);
    let dir = hub_model_dir("verity/tiny-qwen2", &options(cache.path(), true)).unwrap();
    assert_eq!(dir, snapshot);
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    assert_eq!(
        tokenizer.encode("12+3=", false).unwrap(),
        vec![17, 18, 11, 19, 29]
    );
    assert!(dir.join("config.json").is_file() && dir.join("model.safetensors").is_file());

    // A complete cache is used without going online, offline mode or not.
    assert_eq!(
        hub_model_dir("verity/tiny-qwen2", &options(cache.path(), false)).unwrap(),
        snapshot
    );

    // A commit hash names the snapshot directly; a branch name goes through refs/.
    let mut pinned = options(cache.path(), true);
    pinned.revision = COMMIT.into();
    assert_eq!(
        hub_model_dir("verity/tiny-qwen2", &pinned).unwrap(),
        snapshot
    );
    pinned.revision = "v2".into();
    let message = hub_model_dir("verity/tiny-qwen2", &pinned)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("verity/tiny-qwen2") && message.contains("'v2'"),
        "{message}"
    );
}

#[test]
fn a_repo_not_in_the_cache_is_an_error_naming_it_when_offline() {
    let cache = tempfile::tempdir().unwrap();
    cache_repo(cache.path(), "verity/tiny-qwen2", "tiny-qwen2", &[]);
    let error =
        hub_model_dir("Qwen/Qwen2.5-0.5B-Instruct", &options(cache.path(), true)).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, policy::Error::Hub { .. }), "{message}");
    assert!(message.contains("Qwen/Qwen2.5-0.5B-Instruct"), "{message}");
    assert!(message.contains("offline"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn an_incomplete_snapshot_names_the_missing_files_when_offline() {
    let cache = tempfile::tempdir().unwrap();
    cache_repo(
        cache.path(),
        "verity/tiny-llama",
        "tiny-llama",
        &["model.safetensors", "tokenizer.json"],
    );
    let message = hub_model_dir("verity/tiny-llama", &options(cache.path(), true))
        .unwrap_err()
        .to_string();
    assert!(message.contains("verity/tiny-llama"), "{message}");
    assert!(
        message.contains("tokenizer.json") && message.contains("model.safetensors"),
        "{message}"
    );
}

#[test]
fn sharded_weights_need_every_shard_of_the_index() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = cache_repo(
        cache.path(),
        "verity/sharded",
        "tiny-llama",
        &["model.safetensors"],
    );
    let index = serde_json::json!({
        "metadata": {"total_size": 0},
        "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "lm_head.weight": "model-00002-of-00002.safetensors"
        }
    });
    std::fs::write(
        snapshot.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    std::fs::write(snapshot.join("model-00001-of-00002.safetensors"), b"").unwrap();
    let message = hub_model_dir("verity/sharded", &options(cache.path(), true))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("model-00002-of-00002.safetensors"),
        "{message}"
    );
    assert!(
        !message.contains("model-00001-of-00002.safetensors"),
        "{message}"
    );

    std::fs::write(snapshot.join("model-00002-of-00002.safetensors"), b"").unwrap();
    assert_eq!(
        hub_model_dir("verity/sharded", &options(cache.path(), true)).unwrap(),
        snapshot
    );
}

#[test]
fn local_folders_win_over_repo_ids_and_bad_ids_are_rejected() {
    let cache = tempfile::tempdir().unwrap();
    let local = fixture("tiny-qwen2");
    let resolved =
        resolve_model_dir(local.to_str().unwrap(), &options(cache.path(), true)).unwrap();
    assert_eq!(resolved, local);

    for bad in ["../no-such-folder", "a/b/c", "", "org/", "we ird/name"] {
        let message = resolve_model_dir(bad, &options(cache.path(), true))
            .unwrap_err()
            .to_string();
        assert!(message.contains("not a hub repo id"), "{bad:?}: {message}");
    }
    let mut bad_revision = options(cache.path(), true);
    bad_revision.revision = "../../x".into();
    let message = hub_model_dir("org/name", &bad_revision)
        .unwrap_err()
        .to_string();
    assert!(message.contains("revision"), "{message}");
}
