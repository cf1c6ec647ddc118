//! Local tooling: a runner that plays the Lambda service against a stack deployed into an
//! emulator, and the demo built on it. Not deployed; the functions never depend on it.

pub mod fair;
pub mod runner;
pub mod stack;
pub mod template;

pub use runner::{Faults, Runner};
pub use stack::{default_to_local_emulator, repo_root, Stack};
pub use template::EventSources;

use anyhow::Result;

/// Connects a runner to the locally deployed stack (`.local/stack.json`, `template.yaml`).
pub async fn connect_local(faults: Faults) -> Result<Runner> {
    connect_local_counted(faults, None, None).await
}

/// [`connect_local`], counting requests as [`Runner::connect_counted`] does.
pub async fn connect_local_counted(
    faults: Faults,
    functions: Option<&trawl::aws::RequestCounter>,
    event_sources: Option<&trawl::aws::RequestCounter>,
) -> Result<Runner> {
    default_to_local_emulator();
    let root = repo_root();
    let stack_file = std::env::var("TRAWL_STACK_OUTPUTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join(".local/stack.json"));
    let stack = Stack::load(&stack_file)?;
    let sources = EventSources::from_file(&root.join("template.yaml"))?;
    Runner::connect_counted(stack, sources, faults, functions, event_sources).await
}
