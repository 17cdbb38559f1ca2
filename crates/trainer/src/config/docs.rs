//! The config reference: every section and key with its doc and default,
//! rendered as a commented TOML file (valid TOML: it can be copied and
//! edited as a starting config).

use super::schema::SectionDoc;
use super::Config;

/// The reference of every config key, as commented TOML holding the
/// defaults. `verity train --help-config` prints it; configs/README.md
/// includes it.
pub fn reference() -> String {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut out = String::new();
    for (i, section) in Config::SECTIONS.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_section(section, defaults.get(section.name), &mut out);
    }
    out
}

fn render_section(section: &SectionDoc, defaults: Option<&toml::Value>, out: &mut String) {
    comment(section.doc, out);
    out.push_str(&format!("[{}]\n", section.name));
    for key in section.keys {
        comment(key.doc, out);
        match defaults.and_then(|d| d.get(key.name)) {
            Some(value) => out.push_str(&format!("{} = {}\n", key.name, inline(value))),
            None => out.push_str(&format!("# {} is not set by default\n", key.name)),
        }
    }
}

/// A value on one line; small floats in exponent form (`1e-8`, not
/// `0.00000001`).
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) if *f != 0.0 && f.abs() < 1e-3 => format!("{f:e}"),
        other => other.to_string(),
    }
}

fn comment(doc: &str, out: &mut String) {
    for line in doc.lines() {
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str(&format!("# {line}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_documented_and_the_reference_parses_to_the_defaults() {
        let text = reference();
        for section in Config::SECTIONS {
            assert!(!section.doc.trim().is_empty(), "[{}]", section.name);
            for key in section.keys {
                assert!(!key.doc.trim().is_empty(), "{}.{}", section.name, key.name);
                let set = format!("\n{} = ", key.name);
                let unset = format!("\n# {} is not set by default\n", key.name);
                assert!(
                    text.contains(&set) || text.contains(&unset),
                    "{}.{} missing",
                    section.name,
                    key.name
                );
            }
        }
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn configs_readme_holds_the_current_reference() {
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/README.md");
        let text = std::fs::read_to_string(readme).unwrap();
        assert!(
            text.contains(&reference()),
            "configs/README.md is out of date: paste the output of `verity train --help-config`"
        );
    }
}
