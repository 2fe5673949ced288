//! `devtls completions` and `devtls man`: what packagers install loads in
//! the shell and renders with man.

use crate::support;

use support::{ok_in, text, tool};

fn stdout(args: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = ok_in(dir.path(), &support::words(args));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `script` in bash with the completion script sourced.
fn bash_with_completions(script: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("devtls.bash");
    std::fs::write(&file, stdout("completions bash")).unwrap();
    tool("bash")
        .arg("-c")
        .arg(format!("source {} && {script}", file.display()))
        .output()
        .unwrap()
}

#[test]
fn the_bash_script_parses_registers_and_completes_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("devtls.bash");
    std::fs::write(&file, stdout("completions bash")).unwrap();
    let syntax = tool("bash").arg("-n").arg(&file).output().unwrap();
    assert!(syntax.status.success(), "bash -n:\n{}", text(&syntax));

    let registered = bash_with_completions("complete -p devtls");
    assert!(registered.status.success(), "{}", text(&registered));
    assert!(
        String::from_utf8_lossy(&registered.stdout).contains("-F _devtls devtls"),
        "{}",
        text(&registered)
    );

    // What TAB offers after `devtls fle` and after `devtls fleet issue --pre`.
    let complete = |words: &str, current: usize| {
        let out = bash_with_completions(&format!(
            "COMP_WORDS=({words}); COMP_CWORD={current}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; \
             _devtls devtls \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        ));
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(complete("devtls fle", 1).trim(), "fleet");
    assert!(complete("devtls fleet issue --pre", 3)
        .lines()
        .any(|l| l == "--prefix"));
}

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = stdout(&format!("completions {shell}"));
        for word in ["fleet", "quickstart", "--dns", "completions"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = support::run_in(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_man_page_renders_with_man() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("devtls.1");
    std::fs::write(&page, stdout("man")).unwrap();
    let out = tool("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    for part in [
        "NAME",
        "SYNOPSIS",
        "devtls-fleet(1)",
        "Make TLS work on small devices",
    ] {
        assert!(shown.contains(part), "no {part:?} in:\n{shown}");
    }
    assert!(!shown.contains(".TH"), "roff was rendered, not shown raw");

    let pages = dir.path().join("man1");
    ok_in(dir.path(), &["man", "--out", pages.to_str().unwrap()]);
    for name in [
        "devtls.1",
        "devtls-fleet.1",
        "devtls-fleet-issue.1",
        "devtls-man.1",
    ] {
        assert!(pages.join(name).is_file(), "no {name}");
    }
}
