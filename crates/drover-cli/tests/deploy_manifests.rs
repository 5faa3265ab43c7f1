//! The deployment files in `deploy/`, checked by the tools their engines' users rely on:
//!
//! - Kubernetes: `kubernetes-validate --strict` (PyPI; it bundles the API schemas, so it works
//!   offline) against Kubernetes 1.29 and the newest version it bundles;
//! - systemd: `systemd-analyze verify` on the system unit and (`--user`) the user unit;
//! - Nomad: python-hcl2 parses the job, which must be a system job running `drover serve`;
//! - every flag of every `drover` command line in them is one the real binary's `--help` lists.
//!
//! `deploy_run.rs` runs those command lines. The tools come from `scripts/setup-test-env` (the
//! workspace's `.venv`, Debian's systemd); a missing one fails the test with a message saying
//! so: nothing here is ever skipped.

mod common;
mod deploy;

use std::process::{Command, Output};

use deploy::{
    exec_start, help_flags, kubernetes_command_lines, kubernetes_files, nomad_command_line,
    nomad_task, root, run_tool, text, venv_bin,
};

#[test]
fn kubernetes_manifests_pass_kubernetes_validate_strict() {
    let files = kubernetes_files();
    // 1.29: the oldest release still widely run; no version: the newest the package bundles.
    for version in [Some("1.29.0"), None] {
        let mut command = Command::new(venv_bin("kubernetes-validate"));
        command.arg("--strict");
        if let Some(version) = version {
            command.args(["--kubernetes-version", version]);
        }
        command.args(&files);
        let output = run_tool(command, "kubernetes-validate");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "kubernetes-validate --strict ({version:?}) refused the manifests:\n{stdout}{}",
            text(&output.stderr)
        );
        let passed = stdout.matches(" passed for resource ").count();
        assert_eq!(
            passed,
            files.len(),
            "one resource per file passed:\n{stdout}"
        );
    }
    // --strict must refuse a field Kubernetes does not know, or passing proves nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read_to_string(&files[0]).expect("daemonset.yaml");
    let typo = "          command: [\"/usr/local/bin/drover\"]\n";
    assert_eq!(
        good.matches(typo).count(),
        1,
        "the container's command line"
    );
    let bad = dir.path().join("daemonset.yaml");
    std::fs::write(&bad, good.replace(typo, "          comand: [\"drover\"]\n")).expect("write");
    let mut command = Command::new(venv_bin("kubernetes-validate"));
    command.arg("--strict").arg(&bad);
    let output = run_tool(command, "kubernetes-validate");
    assert!(!output.status.success(), "a misspelt field must fail");
    assert!(
        text(&output.stdout).contains("'comand' was unexpected"),
        "{}",
        text(&output.stdout)
    );
}

/// `systemd-analyze verify` on a copy of `unit` whose ExecStart runs the drover under test:
/// verify refuses a unit whose binary does not exist, and no test machine has
/// /usr/local/bin/drover or ~/.cargo/bin/drover. `--man=no`: `Documentation=man:drover(1)` is
/// the page `drover man` installs, which the test machine has not. Warnings (an unknown key, a
/// value it cannot parse) are printed while it still exits 0, so any output fails the test.
fn verify_unit(unit: &str, program: &str, user: bool, edit: impl Fn(String) -> String) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).expect(unit);
    let from = format!("ExecStart={program} ");
    assert_eq!(source.matches(&from).count(), 1, "{unit} runs {program}");
    let copy = dir.path().join(unit);
    let rewritten = source.replace(&from, &format!("ExecStart={} ", common::drover_bin()));
    std::fs::write(&copy, edit(rewritten)).expect("write the unit");
    let mut command = Command::new("systemd-analyze");
    if user {
        // The user manager's paths need a runtime directory.
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).expect("runtime dir");
        command.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    command.args(["verify", "--man=no"]).arg(&copy);
    run_tool(
        command,
        "systemd-analyze (Debian's systemd package; on Debian it is installed with systemd)",
    )
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    for (unit, program, user) in [
        ("drover.service", "/usr/local/bin/drover", false),
        ("drover-user.service", "%h/.cargo/bin/drover", true),
    ] {
        let output = verify_unit(unit, program, user, |text| text);
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}\n{}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        let line = exec_start(unit).join(" ");
        assert!(
            line.contains(" serve ") && line.ends_with(" --on-shutdown leave"),
            "{line}"
        );
        let source = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).expect(unit);
        assert!(
            source.contains("\nKillMode=process\n"),
            "{unit}: a restart must signal only the daemon, never the holders"
        );
        // A misspelt key is only a warning to systemd, so the check above must catch it.
        let bad = verify_unit(unit, program, user, |text| {
            text.replace("\nKillMode=process\n", "\nKilMode=process\n")
        });
        assert!(
            text(&bad.stderr).contains("Unknown key 'KilMode'"),
            "{}",
            text(&bad.stderr)
        );
    }
}

#[test]
fn nomad_job_is_a_system_job_running_drover_serve() {
    let task = nomad_task();
    assert_eq!(task["driver"], "raw_exec");
    assert_eq!(task["user"], "drover");
    assert_eq!(
        task["kill_timeout"], "30s",
        "room for the 10 s grace plus 5 s"
    );
    let line = nomad_command_line();
    assert_eq!(line[..2], ["/usr/local/bin/drover", "serve"]);
}

#[test]
fn every_flag_in_the_manifests_is_one_drover_accepts() {
    let (kubernetes, probes) = kubernetes_command_lines();
    let mut lines = vec![
        ("drover.service", exec_start("drover.service")),
        ("drover-user.service", exec_start("drover-user.service")),
        ("daemonset.yaml", kubernetes),
        ("drover.nomad.hcl", nomad_command_line()),
    ];
    lines.extend(
        probes
            .into_iter()
            .map(|probe| ("daemonset.yaml probe", probe)),
    );
    let mut checked = 0;
    for (origin, line) in lines {
        assert!(line[0].ends_with("/drover"), "{origin}: {line:?}");
        let subcommand = line
            .iter()
            .find(|word| ["serve", "health"].contains(&word.as_str()))
            .unwrap_or_else(|| panic!("{origin}: no drover subcommand in {line:?}"));
        let known = help_flags(subcommand);
        for flag in line.iter().filter(|word| word.starts_with("--")) {
            assert!(
                known.contains(flag),
                "{origin}: `drover {subcommand}` has no flag {flag} (its --help lists {known:?})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 17, "flags checked");
}
