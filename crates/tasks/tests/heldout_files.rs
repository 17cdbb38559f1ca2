//! The frozen held-out sets under data/heldout/<version>/ are exactly what
//! the generators produce today, byte for byte, for every family and level
//! of the current version ([`tasks::HELDOUT_VERSION`]); the files of older
//! versions stay readable and scorable.
//!
//! After a deliberate change to a generator that alters a held-out set,
//! name a new version in `HELDOUT_VERSION` (so evaluation records say which
//! sets they measured) and write its files with
//! `VERITY_BLESS=1 cargo test -p verity-tasks --test heldout_files`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tasks::{heldout, heldout_file_name, load_frozen_heldout, read_problems, to_jsonl};

fn heldout_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(tasks::HELDOUT_DIR)
}

#[test]
fn frozen_heldout_sets_regenerate_byte_for_byte() {
    let dir = heldout_root().join(tasks::HELDOUT_VERSION);
    let bless = std::env::var_os("VERITY_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut expected = BTreeSet::new();
    let mut stale = Vec::new();
    for family in tasks::all() {
        for level in family.levels() {
            let name = heldout_file_name(family.name(), level);
            let path = dir.join(&name);
            let fresh = to_jsonl(heldout(family.name(), level).unwrap());
            if bless {
                std::fs::write(&path, &fresh).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(fresh.as_str()) {
                stale.push(name.clone());
            }
            expected.insert(name);
        }
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let stray: Vec<_> = present.difference(&expected).collect();
    assert!(
        stale.is_empty() && stray.is_empty(),
        "held-out files differ from the generators: {stale:?}; files of no family/level: {stray:?}\n\
         (a deliberate change needs a new HELDOUT_VERSION; write it with \
         VERITY_BLESS=1 cargo test -p verity-tasks --test heldout_files)"
    );
}

#[test]
fn frozen_sets_load_as_the_canonical_problems() {
    if std::env::var_os("VERITY_BLESS").is_some() {
        return; // the files are being rewritten by the test above
    }
    let root = heldout_root();
    for family in tasks::all() {
        let level = family.max_level();
        let loaded = load_frozen_heldout(&root, family.name(), level).unwrap();
        assert_eq!(loaded, heldout(family.name(), level).unwrap());
    }
}

/// Older versions stay as they were written: every file parses and every
/// worked solution in it still scores 1 with today's verifiers.
#[test]
fn older_versions_stay_scorable() {
    let root = heldout_root();
    let mut versions = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() || dir.ends_with(tasks::HELDOUT_VERSION) {
            continue;
        }
        versions += 1;
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let problems = read_problems(&path).unwrap();
            assert!(!problems.is_empty(), "{}", path.display());
            for p in &problems {
                let v = p.verify(&p.solution);
                assert_eq!(v.reward, 1.0, "{}: {} {v:?}", path.display(), p.id);
            }
        }
    }
    assert!(versions >= 1, "the v1 sets are kept");
}
