//! The frozen held-out sets under data/heldout/ are exactly what the
//! generators produce today, byte for byte, for every family and level.
//!
//! After a deliberate change to a generator, rewrite them with
//! `VERITY_BLESS=1 cargo test -p verity-tasks --test heldout_files`
//! (evaluation numbers before and after the change then no longer compare).

use std::collections::BTreeSet;
use std::path::PathBuf;

use tasks::{heldout, heldout_file_name, load_frozen_heldout, to_jsonl};

fn heldout_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(tasks::HELDOUT_DIR)
}

#[test]
fn frozen_heldout_sets_regenerate_byte_for_byte() {
    let dir = heldout_dir();
    let bless = std::env::var_os("VERITY_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut expected = BTreeSet::new();
    let mut stale = Vec::new();
    for family in tasks::all() {
        for level in 1..=family.max_level() {
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
         (rewrite with VERITY_BLESS=1 cargo test -p verity-tasks --test heldout_files)"
    );
}

#[test]
fn frozen_sets_load_as_the_canonical_problems() {
    let dir = heldout_dir();
    for family in tasks::all() {
        let level = family.max_level();
        let loaded = load_frozen_heldout(&dir, family.name(), level).unwrap();
        assert_eq!(loaded, heldout(family.name(), level).unwrap());
    }
}
