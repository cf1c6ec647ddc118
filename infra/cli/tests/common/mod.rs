//! What the CLI's tests share: the `trawl` binary run off the runtime's threads, and a
//! fresh data directory.

// Each test file includes this module and uses its own part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

/// Runs the binary off the runtime's threads, so the fixture keeps serving meanwhile.
pub async fn trawl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(&args)
            .output()
            .expect("the trawl binary runs")
    })
    .await
    .unwrap()
}

/// A data directory no other test uses: `trawl-{name}-{pid}-{nanos}` under the temp dir.
pub fn data_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("trawl-{name}-{}-{nanos}", std::process::id()))
}
