//! The thinking-budget evaluation on a micro model taught addition by a
//! short SFT run: every budget's greedy score equals a separate evaluation
//! with that many new tokens, and the curve behaves as budgets should.

use trainer::{heldout_problems, train, Checkpoint, Config, EvalSettings, Silent};

#[test]
fn budget_curve_matches_separate_evaluations_at_each_budget() {
    let out = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [run]
        out_dir = "{}"
        seed = 5
        threads = 1
        [model]
        hidden_size = 32
        intermediate_size = 64
        num_hidden_layers = 1
        num_attention_heads = 2
        num_key_value_heads = 2
        [tasks]
        mixture = [{{ task = "add", level = 1 }}]
        [sft]
        steps = 400
        batch_size = 32
        lr = 1e-2
        lr_decay = "constant"
        [grpo]
        steps = 0
        [eval]
        problems = 12
        samples = 0
        "#,
        out.path().display()
    );
    let config = Config::from_toml(&text, "micro.toml", "micro", &[]).unwrap();
    let summary = train(&config, &mut Silent).unwrap();
    let checkpoint = Checkpoint::open(summary.last_checkpoint.as_ref().unwrap(), None).unwrap();
    assert_eq!(
        checkpoint.run_dir().unwrap(),
        summary.run_dir.canonicalize().unwrap()
    );
    let mixture = checkpoint.selection(&[], None).unwrap();
    let problems = heldout_problems(&mixture, 12).unwrap();
    let settings = EvalSettings {
        samples: 4,
        k: 4,
        temperature: 1.0,
        max_new_tokens: 48,
        batch_size: 5,
        ..checkpoint.eval_settings()
    };
    let budgets = [48, 2, 12, 24];
    let record = checkpoint
        .evaluate_budgets(&problems, &budgets, &settings, None)
        .unwrap();
    let got: Vec<usize> = record.budgets.iter().map(|b| b.max_new_tokens).collect();
    assert_eq!(got, [2, 12, 24, 48]);
    assert_eq!(record.k, 4);
    for score in &record.budgets {
        let greedy_only = EvalSettings {
            samples: 0,
            max_new_tokens: score.max_new_tokens,
            ..settings
        };
        let separate = checkpoint.evaluate(&problems, &greedy_only, None).unwrap();
        assert_eq!(score.problems, problems.len());
        assert_eq!(score.pass_at_1, separate.overall.pass_at_1, "{score:?}");
        assert_eq!(score.format_rate, separate.overall.format_rate, "{score:?}");
        assert!(score.mean_length <= score.max_new_tokens as f64);
        let maj = score.maj_at_k.unwrap();
        assert!((0.0..=1.0).contains(&maj));
    }
    // Two tokens cannot hold an answer block; the taught model answers with room.
    let first = &record.budgets[0];
    assert_eq!((first.pass_at_1, first.maj_at_k), (0.0, Some(0.0)));
    let last = record.budgets.last().unwrap();
    assert!(last.pass_at_1 > 0.0, "{record:?}");
    let votes_pass = record.budgets.iter().any(|b| b.maj_at_k > Some(0.0));
    assert!(votes_pass, "{record:?}");
    let lengths: Vec<f64> = record.budgets.iter().map(|b| b.mean_length).collect();
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "{lengths:?}");
}
