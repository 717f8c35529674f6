//! The README cannot drift from the binary: every `wsloop serve` and `wsloop client` flag that
//! `--help` prints is in that command's flag table in the README with the same default, and the
//! tables list no flag that does not exist.

use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// (flag, default) for each option of `wsloop COMMAND --help`, whether clap prints the
/// default on the flag's line or on the help line under it.
fn flags(command: &str) -> Vec<(String, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_wsloop"))
        .args([command, "--help"])
        .output()
        .expect("run wsloop --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        // "-H, --header <NAME:VALUE>  ..." or "--bind <BIND>": the long name starts the flag.
        let long = t.strip_prefix("--").or_else(|| {
            let b = t.as_bytes();
            (b.len() > 6 && b[0] == b'-' && b[1] != b'-' && t[2..].starts_with(", --")).then(|| &t[6..])
        });
        if let Some(rest) = long {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name != "help" {
                flags.push((format!("--{name}"), None));
            }
        }
        if let (Some(last), Some(i)) = (flags.last_mut(), t.find("[default: ")) {
            let value = &t[i + "[default: ".len()..];
            last.1 = value.strip_suffix(']').map(str::to_owned);
        }
    }
    assert!(
        flags.len() >= 10,
        "parsed too few flags from {command} --help: {flags:?}"
    );
    flags
}

/// The README section `## <title>` up to the next `## `.
fn section<'a>(readme: &'a str, title: &str) -> &'a str {
    let start = readme
        .find(&format!("## {title}"))
        .unwrap_or_else(|| panic!("no section {title}"));
    let section = &readme[start..];
    &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)]
}

/// The flag a table row names: "| `--flag ..." or "| `-X, --flag ...".
fn row_flag(line: &str) -> Option<&str> {
    let cell = line.strip_prefix("| `")?;
    let cell = match cell.strip_prefix('-') {
        Some(r) if !r.starts_with('-') => r.get(1..)?.strip_prefix(", ")?,
        _ => cell,
    };
    cell.starts_with("--")
        .then(|| cell.split(['`', ' ']).next().unwrap_or(""))
}

fn check_table(command: &str, title: &str) {
    let readme = readme();
    let table = section(&readme, title);
    let rows: Vec<(&str, &str)> = table.lines().filter_map(|l| row_flag(l).map(|f| (f, l))).collect();
    let help = flags(command);
    let mut problems = Vec::new();
    for (flag, default) in &help {
        match (rows.iter().find(|(f, _)| f == flag), default) {
            (None, _) => problems.push(format!("{flag} is not in the README's `wsloop {command}` flag table")),
            (Some((_, row)), Some(d)) => {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                if cells.get(2) != Some(&format!("`{d}`").as_str()) {
                    problems.push(format!("{flag}: --help says default {d}, the README row says {row}"));
                }
            }
            (Some(_), None) => {}
        }
    }
    for (flag, _) in &rows {
        if !help.iter().any(|(f, _)| f == flag) {
            problems.push(format!("README lists {flag}, which wsloop {command} does not have"));
        }
    }
    assert!(problems.is_empty(), "README out of date:\n{}", problems.join("\n"));
}

#[test]
fn every_serve_flag_is_in_the_readme_with_its_default_and_no_other() {
    check_table("serve", "`wsloop serve` flags");
}

#[test]
fn every_client_flag_is_in_the_readme_with_its_default_and_no_other() {
    check_table("client", "`wsloop client`");
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
