//! The real agent CLIs — claude, codex, gemini and opencode, pinned in tests/agents and
//! installed by `scripts/setup-test-env` — spawned by the real daemon through the built-in
//! backends, against the scripted mock model on loopback (`tests/agents/mock_model.py`). They
//! fail when a backend's command line or a parser no longer matches the real tool: the CLI
//! must accept the command line, Drover must store its output byte for byte, and the
//! activity must say exactly what the mock scripted. Each test has its own mock, HOME and
//! daemon, so they run in parallel. As root, each test's mock and daemon (and so the CLIs)
//! live in a network namespace of their own with only loopback.

mod common;

#[path = "real_agents/cli.rs"]
mod cli;
#[path = "real_agents/mock.rs"]
mod mock;
#[path = "real_agents/rig.rs"]
mod rig;
#[path = "real_agents/runs.rs"]
mod runs;
#[path = "real_agents/signals.rs"]
mod signals;
