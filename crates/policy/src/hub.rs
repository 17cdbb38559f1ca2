//! Hugging Face Hub repositories: a repo id such as
//! `Qwen/Qwen2.5-0.5B-Instruct` resolved to a folder of the local hub cache
//! holding config.json, the safetensors weights and the tokenizer files.
//!
//! The cache is the one Python's `huggingface_hub` shares
//! (`models--org--name/{refs,snapshots,blobs}`), so a model downloaded by
//! either is found by both. hf-hub 0.5 ignores `HF_HUB_OFFLINE`; here the
//! cache is always looked at first and the network is used only when the
//! cached snapshot is incomplete and offline mode is off.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use serde_json::Value;

use crate::error::{Error, Result};

const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const WEIGHTS_FILE: &str = "model.safetensors";
const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Downloaded when the repo has them; a model loads without them.
const OPTIONAL_FILES: [&str; 4] = [
    "generation_config.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
];

/// Where to look for hub repositories and whether downloading is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Branch, tag or commit hash. Default: `main`.
    pub revision: String,
    /// Never use the network. Default: on when `HF_HUB_OFFLINE` (or
    /// `TRANSFORMERS_OFFLINE`) is `1`, `true`, `yes` or `on`.
    pub offline: bool,
    /// The hub cache folder. Default: `HF_HUB_CACHE`, else `HF_HOME/hub`,
    /// else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// The hub's address. Default: `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Show a progress bar per downloaded file. Default: off.
    pub progress: bool,
}

impl HubOptions {
    /// Options from the environment variables Python's `huggingface_hub` reads.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = || set("HOME").map(PathBuf::from);
        let expand = |path: String| match (path.strip_prefix("~/"), home()) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => PathBuf::from(path),
        };
        let cache_dir =
            if let Some(dir) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
                expand(dir)
            } else if let Some(dir) = set("HF_HOME") {
                expand(dir).join("hub")
            } else if let Some(dir) = set("XDG_CACHE_HOME") {
                expand(dir).join("huggingface").join("hub")
            } else if let Some(home) = home() {
                home.join(".cache").join("huggingface").join("hub")
            } else {
                return Err(Error::io(
                    "~/.cache/huggingface/hub",
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no home folder for the hub cache: set HF_HUB_CACHE, HF_HOME or HOME",
                    ),
                ));
            };
        let is_true = |name: &str| {
            set(name).is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
            })
        };
        Ok(Self {
            revision: "main".into(),
            offline: is_true("HF_HUB_OFFLINE") || is_true("TRANSFORMERS_OFFLINE"),
            cache_dir,
            endpoint: set("HF_ENDPOINT"),
            progress: false,
        })
    }
}

/// A local model folder if `name_or_path` is a directory, else the hub repo
/// of that id through [`hub_model_dir`].
pub fn resolve_model_dir(name_or_path: &str, options: &HubOptions) -> Result<PathBuf> {
    let path = Path::new(name_or_path);
    if path.is_dir() {
        Ok(path.to_owned())
    } else {
        hub_model_dir(name_or_path, options)
    }
}

/// The snapshot folder of hub model `repo_id` at `options.revision`, with
/// config.json, tokenizer.json and all safetensors weights (every shard of
/// a sharded checkpoint). A complete cached snapshot is used as is; otherwise
/// the missing files are downloaded, unless `options.offline`.
pub fn hub_model_dir(repo_id: &str, options: &HubOptions) -> Result<PathBuf> {
    let hub_error = |message: String| Error::Hub {
        repo: repo_id.to_owned(),
        message,
    };
    check_repo_id(repo_id).map_err(hub_error)?;
    check_revision(&options.revision).map_err(hub_error)?;
    let repo = Repo::with_revision(
        repo_id.to_owned(),
        RepoType::Model,
        options.revision.clone(),
    );
    let cached = cached_snapshot(&options.cache_dir, &repo)?;
    let missing = match &cached {
        Some(snapshot) => {
            let missing = missing_model_files(snapshot)?;
            if missing.is_empty() {
                return Ok(snapshot.clone());
            }
            missing
        }
        None => Vec::new(),
    };
    if options.offline {
        let found = match &cached {
            Some(snapshot) => format!(
                "the cached snapshot {} lacks {}",
                snapshot.display(),
                missing.join(", ")
            ),
            None => format!(
                "revision '{}' is not in the hub cache {}",
                options.revision,
                options.cache_dir.display()
            ),
        };
        return Err(hub_error(format!(
            "{found}, and offline mode is on (HF_HUB_OFFLINE); download it once with network access"
        )));
    }
    download(repo_id, options)
}

/// `refs/<revision>` names the snapshot; a commit hash names it directly.
fn cached_snapshot(cache_dir: &Path, repo: &Repo) -> Result<Option<PathBuf>> {
    let repo_dir = cache_dir.join(repo.folder_name());
    let ref_path = repo_dir.join("refs").join(repo.revision());
    let commit = if ref_path.is_file() {
        let commit = std::fs::read_to_string(&ref_path).map_err(|e| Error::io(&ref_path, e))?;
        commit.trim().to_owned()
    } else {
        repo.revision().to_owned()
    };
    if commit.is_empty() || commit.contains(['/', '\\']) || commit == ".." {
        return Ok(None);
    }
    let snapshot = repo_dir.join("snapshots").join(commit);
    Ok(snapshot.is_dir().then_some(snapshot))
}

/// Files a model folder needs and lacks; empty when it is complete.
fn missing_model_files(dir: &Path) -> Result<Vec<String>> {
    let mut missing: Vec<String> = [CONFIG_FILE, TOKENIZER_FILE]
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .map(String::from)
        .collect();
    let index_path = dir.join(WEIGHTS_INDEX_FILE);
    if index_path.is_file() {
        missing.extend(
            shard_names(&index_path)?
                .into_iter()
                .filter(|shard| !dir.join(shard).is_file()),
        );
    } else if !dir.join(WEIGHTS_FILE).is_file() && !has_safetensors(dir) {
        missing.push(format!(
            "{WEIGHTS_FILE} (or {WEIGHTS_INDEX_FILE} and its shards)"
        ));
    }
    Ok(missing)
}

fn has_safetensors(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            entry
                .path()
                .extension()
                .is_some_and(|ext| ext == "safetensors")
        })
    })
}

/// The shard files a `model.safetensors.index.json` names, sorted, each once.
fn shard_names(index_path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    let index: Value = serde_json::from_str(&text).map_err(|e| Error::json(index_path, e))?;
    let bad = |message: String| Error::Safetensors {
        path: index_path.to_owned(),
        message,
    };
    let Some(weight_map) = index.get("weight_map").and_then(Value::as_object) else {
        return Err(bad("no \"weight_map\" object".into()));
    };
    let mut shards = Vec::new();
    for (tensor, file) in weight_map {
        let Some(file) = file.as_str() else {
            return Err(bad(format!("weight_map[{tensor:?}] is not a file name")));
        };
        if file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(bad(format!(
                "weight_map[{tensor:?}] = {file:?} is not a file in the folder"
            )));
        }
        shards.push(file.to_owned());
    }
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// Downloads the model files of `repo_id` into the cache and returns their snapshot folder.
fn download(repo_id: &str, options: &HubOptions) -> Result<PathBuf> {
    let hub_error = |message: String| Error::Hub {
        repo: repo_id.to_owned(),
        message,
    };
    let cache = Cache::new(options.cache_dir.clone());
    let mut builder = ApiBuilder::from_cache(cache.clone()).with_progress(options.progress);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        builder = builder.with_token(Some(token));
    }
    let api = builder
        .build()
        .map_err(|e| hub_error(format!("cannot start a hub client: {e}")))?;
    let repo = Repo::with_revision(
        repo_id.to_owned(),
        RepoType::Model,
        options.revision.clone(),
    );
    let api_repo = api.repo(repo.clone());
    let info = api_repo.info().map_err(|e| {
        hub_error(format!(
            "cannot read the repo at revision '{}' from the hub: {e}",
            options.revision
        ))
    })?;
    let snapshot = cache.repo(repo.clone()).pointer_path(&info.sha);
    // Top-level files only: repos such as Llama's keep other formats in subfolders.
    let listed: Vec<&str> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.as_str())
        .filter(|name| !name.contains('/'))
        .collect();
    let fetch = |name: &str| -> Result<()> {
        if snapshot.join(name).is_file() {
            return Ok(());
        }
        api_repo
            .download(name)
            .map(|_| ())
            .map_err(|e| hub_error(format!("downloading {name}: {e}")))
    };
    for name in [CONFIG_FILE, TOKENIZER_FILE] {
        if !listed.contains(&name) {
            return Err(hub_error(format!("the repo has no {name}")));
        }
        fetch(name)?;
    }
    for name in OPTIONAL_FILES
        .into_iter()
        .filter(|name| listed.contains(name))
    {
        fetch(name)?;
    }
    if listed.contains(&WEIGHTS_INDEX_FILE) {
        fetch(WEIGHTS_INDEX_FILE)?;
        for shard in shard_names(&snapshot.join(WEIGHTS_INDEX_FILE))? {
            fetch(&shard)?;
        }
    } else {
        let weights: Vec<&str> = listed
            .iter()
            .copied()
            .filter(|name| name.ends_with(".safetensors"))
            .collect();
        if weights.is_empty() {
            return Err(hub_error("the repo has no safetensors weights".into()));
        }
        for name in weights {
            fetch(name)?;
        }
    }
    // Keep `refs/<revision>` on the snapshot just completed, so offline use finds it.
    cache
        .repo(repo)
        .create_ref(&info.sha)
        .map_err(|e| Error::io(&options.cache_dir, e))?;
    let missing = missing_model_files(&snapshot)?;
    if !missing.is_empty() {
        return Err(hub_error(format!(
            "after downloading, {} still lacks {}",
            snapshot.display(),
            missing.join(", ")
        )));
    }
    Ok(snapshot)
}

/// `name` or `org/name`, with the characters the hub allows.
fn check_repo_id(repo_id: &str) -> std::result::Result<(), String> {
    let parts: Vec<&str> = repo_id.split('/').collect();
    let valid_part = |part: &&str| {
        !part.is_empty()
            && *part != "."
            && *part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if parts.len() <= 2 && parts.iter().all(valid_part) {
        Ok(())
    } else {
        Err("not a hub repo id (expected `name` or `org/name`) nor an existing folder".into())
    }
}

/// A branch, tag or commit; it becomes a path below `refs/`, so no `..`.
fn check_revision(revision: &str) -> std::result::Result<(), String> {
    let valid = !revision.is_empty()
        && !revision.starts_with('/')
        && revision
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !revision.contains('\\');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "revision {revision:?} is not a branch, tag or commit name"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options_from(vars: &[(&str, &str)]) -> Result<HubOptions> {
        HubOptions::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn cache_folder_follows_huggingface_hub_precedence() {
        let dir = |vars: &[(&str, &str)]| options_from(vars).unwrap().cache_dir;
        assert_eq!(
            dir(&[("HOME", "/h")]),
            PathBuf::from("/h/.cache/huggingface/hub")
        );
        assert_eq!(
            dir(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            dir(&[
                ("HOME", "/h"),
                ("XDG_CACHE_HOME", "/x"),
                ("HF_HOME", "~/hf")
            ]),
            PathBuf::from("/h/hf/hub")
        );
        assert_eq!(
            dir(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/cache")]),
            PathBuf::from("/cache")
        );
        assert!(options_from(&[]).is_err());
    }

    #[test]
    fn offline_mode_reads_the_usual_variables() {
        let offline = |vars: &[(&str, &str)]| options_from(vars).unwrap().offline;
        assert!(!offline(&[("HOME", "/h")]));
        for value in ["1", "true", "YES", "on"] {
            assert!(
                offline(&[("HOME", "/h"), ("HF_HUB_OFFLINE", value)]),
                "{value}"
            );
        }
        assert!(!offline(&[("HOME", "/h"), ("HF_HUB_OFFLINE", "0")]));
        assert!(offline(&[("HOME", "/h"), ("TRANSFORMERS_OFFLINE", "1")]));
        let options = options_from(&[("HOME", "/h"), ("HF_ENDPOINT", "http://mirror")]).unwrap();
        assert_eq!(options.endpoint.as_deref(), Some("http://mirror"));
        assert_eq!(options.revision, "main");
    }

    #[test]
    fn repo_ids_and_revisions_cannot_leave_the_cache() {
        for good in ["gpt2", "Qwen/Qwen2.5-0.5B-Instruct", "org_1/name.v2"] {
            assert!(check_repo_id(good).is_ok(), "{good}");
        }
        for bad in ["", "/x", "a/b/c", "../x", "a/..", "a b", "a\\b"] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
        for good in ["main", "v1.0", "refs/pr/1", "0123abcd"] {
            assert!(check_revision(good).is_ok(), "{good}");
        }
        for bad in ["", "/main", "a/../b", "..", "a//b", "a\\b"] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
    }
}
