//! The four real agent CLIs as installed by `scripts/setup-test-env`, and what each needs to
//! talk to the mock model instead of its vendor: environment, a configuration file in a
//! scratch HOME, and the arguments a user would give `drover spawn` (the same as
//! `tests/agents/record.py` uses for the recorded fixtures).

use std::path::{Path, PathBuf};

use super::mock::agents_dir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cli {
    Claude,
    Codex,
    Gemini,
    Opencode,
}

/// `tests/agents/node_modules/.bin`.
pub fn bin_dir() -> PathBuf {
    agents_dir().join("node_modules/.bin")
}

impl Cli {
    /// The backend's (and the executable's) name.
    pub fn name(self) -> &'static str {
        match self {
            Cli::Claude => "claude",
            Cli::Codex => "codex",
            Cli::Gemini => "gemini",
            Cli::Opencode => "opencode",
        }
    }

    /// The installed executable; fails the test, saying how to install it, when it is missing.
    pub fn executable(self) -> PathBuf {
        let path = bin_dir().join(self.name());
        assert!(
            path.exists(),
            "{} does not exist: the real agent CLIs are required; run `scripts/setup-test-env` \
             at the workspace root (it installs them from tests/agents/package-lock.json)",
            path.display()
        );
        path
    }

    /// Writes the CLI's configuration under `home` for the mock at `url`; the environment
    /// variables the agent needs besides HOME and PATH.
    pub fn configure(self, home: &Path, url: &str) -> Vec<(&'static str, String)> {
        match self {
            Cli::Claude => vec![
                ("ANTHROPIC_BASE_URL", url.to_owned()),
                ("ANTHROPIC_API_KEY", "sk-mock".to_owned()),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
                // An API error fails at once instead of after ten retries with backoff.
                ("CLAUDE_CODE_MAX_RETRIES", "0".to_owned()),
            ],
            Cli::Codex => {
                write(
                    &home.join(".codex/config.toml"),
                    &format!(
                        "model_provider = \"mock\"\nmodel = \"mock-model\"\n\n\
                         [model_providers.mock]\nname = \"Mock\"\nbase_url = \"{url}/v1\"\n\
                         wire_api = \"responses\"\nenv_key = \"MOCK_API_KEY\"\n\
                         request_max_retries = 0\nstream_max_retries = 0\n"
                    ),
                );
                vec![("MOCK_API_KEY", "sk-mock".to_owned())]
            }
            Cli::Gemini => {
                let settings = serde_json::json!({
                    "security": {"auth": {"selectedType": "gemini-api-key"}},
                    "privacy": {"usageStatisticsEnabled": false},
                    "general": {"disableAutoUpdate": true, "disableUpdateNag": true,
                                "maxAttempts": 1},
                    "telemetry": {"enabled": false},
                });
                write(&home.join(".gemini/settings.json"), &settings.to_string());
                vec![
                    ("GEMINI_API_KEY", "mock-key".to_owned()),
                    ("GOOGLE_GEMINI_BASE_URL", url.to_owned()),
                    ("GEMINI_CLI_TRUST_WORKSPACE", "true".to_owned()),
                ]
            }
            Cli::Opencode => {
                let config = serde_json::json!({
                    "provider": {"mock": {
                        "npm": "@ai-sdk/openai-compatible",
                        "name": "Mock",
                        "options": {"baseURL": format!("{url}/v1"), "apiKey": "sk-mock"},
                        // USD per million tokens, so that each step reports a cost.
                        "models": {"mock-model": {"name": "Mock Model",
                                                  "cost": {"input": 3, "output": 15}}}}},
                    "model": "mock/mock-model",
                    "small_model": "mock/mock-model",
                    "autoupdate": false,
                    "share": "disabled",
                });
                write(
                    &home.join(".config/opencode/opencode.json"),
                    &config.to_string(),
                );
                vec![
                    ("OPENCODE_DISABLE_AUTOUPDATE", "1".to_owned()),
                    ("OPENCODE_DISABLE_MODELS_FETCH", "1".to_owned()),
                    ("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1".to_owned()),
                    ("OPENCODE_DISABLE_LSP_DOWNLOAD", "1".to_owned()),
                ]
            }
        }
    }

    /// `drover spawn` arguments beyond backend and task: a model (so the backend's `--model`
    /// group is exercised) and, after `--`, what lets the CLI run its shell tool unattended.
    pub fn spawn_args(self) -> &'static [&'static str] {
        match self {
            Cli::Claude => &[
                "-m",
                "claude-sonnet-4-5",
                "--system-prompt",
                "Be brief.",
                "--",
                "--allowedTools",
                "Bash",
            ],
            Cli::Codex => &["-m", "mock-model"],
            // A named model skips gemini's router call (a classifier request per prompt).
            Cli::Gemini => &["-m", "gemini-2.5-pro", "--", "--yolo"],
            Cli::Opencode => &["-m", "mock/mock-model"],
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("config dir");
    std::fs::write(path, text).expect("write a CLI's config");
}
