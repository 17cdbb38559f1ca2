//! The split guarantee, over 100,000 training draws per family: no training
//! prompt equals any held-out prompt (compared as full text).

use std::thread;

use tasks::{audit, Task};

const DRAWS_PER_FAMILY: u64 = 100_000;

fn audit_family(family: &dyn Task) -> Vec<String> {
    let levels = u64::from(family.max_level());
    let per_level = DRAWS_PER_FAMILY.div_ceil(levels);
    let mut problems = Vec::new();
    let mut total = 0;
    for level in 1..=family.max_level() {
        let found = audit(family.name(), level, per_level).expect("training draws");
        total += found.draws;
        if found.leaks != 0 {
            problems.push(format!("{} L{level}: {found:?}", family.name()));
        }
    }
    assert!(total >= DRAWS_PER_FAMILY);
    problems
}

#[test]
fn no_heldout_prompt_is_ever_drawn_for_training() {
    let leaks: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = tasks::all()
            .iter()
            .map(|family| scope.spawn(move || audit_family(*family)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("audit panicked"))
            .collect()
    });
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

/// The guard is not vacuous: in a level with few distinct problems the
/// training stream does meet held-out prompts and redraws them.
#[test]
fn the_guard_redraws_in_small_levels() {
    let found = audit("arith", 1, 5_000).unwrap();
    assert!(found.redrawn > 0, "{found:?}");
    assert_eq!(found.leaks, 0);
}
