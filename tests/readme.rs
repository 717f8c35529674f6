//! The README cannot drift from the binary: every `wsloop serve` flag that `--help` prints is in
//! the README's flag table with the same default, and the table lists no flag that does not
//! exist.

use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// (flag, default) for each option of `wsloop serve --help`.
fn serve_flags() -> Vec<(String, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_wsloop"))
        .args(["serve", "--help"])
        .output()
        .expect("run wsloop serve --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name != "help" {
                flags.push((format!("--{name}"), None));
            }
        } else if let (Some(last), Some(i)) = (flags.last_mut(), t.find("[default: ")) {
            let value = &t[i + "[default: ".len()..];
            last.1 = value.strip_suffix(']').map(str::to_owned);
        }
    }
    assert!(flags.len() >= 10, "parsed too few flags from --help: {flags:?}");
    flags
}

/// The README table row of a flag: the line starting with "| `--flag".
fn row<'a>(readme: &'a str, flag: &str) -> Option<&'a str> {
    readme.lines().find(|l| {
        l.strip_prefix("| `")
            .and_then(|r| r.strip_prefix(flag))
            .is_some_and(|r| r.starts_with('`') || r.starts_with(' '))
    })
}

#[test]
fn every_serve_flag_is_in_the_readme_with_its_default() {
    let readme = readme();
    let mut problems = Vec::new();
    for (flag, default) in serve_flags() {
        match (row(&readme, &flag), default) {
            (None, _) => problems.push(format!("{flag} is not in the README's flag table")),
            (Some(row), Some(d)) => {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                if cells.get(2) != Some(&format!("`{d}`").as_str()) {
                    problems.push(format!("{flag}: --help says default {d}, the README row says {row}"));
                }
            }
            (Some(_), None) => {}
        }
    }
    assert!(problems.is_empty(), "README out of date:\n{}", problems.join("\n"));
}

#[test]
fn the_readme_lists_no_flag_that_does_not_exist() {
    let readme = readme();
    let flags: Vec<String> = serve_flags().into_iter().map(|(f, _)| f).collect();
    let start = readme.find("## `wsloop serve` flags").expect("flag section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    for line in section.lines().filter(|l| l.starts_with("| `--")) {
        let flag = line[3..].split(['`', ' ']).next().unwrap();
        assert!(
            flags.iter().any(|f| f == flag),
            "README lists {flag}, which wsloop serve does not have"
        );
    }
}

#[test]
fn the_readme_documents_every_demo_route() {
    let readme = readme();
    for route in [
        "`/`",
        "`/health`",
        "`/metrics`",
        "`/echo`",
        "`/chat?room=R&name=N`",
        "`/rooms/{room}/messages`",
        "`/learn`",
    ] {
        assert!(
            readme.contains(&format!("| {route} |")),
            "README's route table lacks {route}"
        );
    }
}
