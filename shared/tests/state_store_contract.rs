//! The state store contract (`trawl::testing::contract`) on the in-process stores: memory,
//! and SQLite rows on disk. DynamoDB runs the same cases in `tests/e2e/tests/contract.rs`.

mod memory {
    trawl::state_store_contract!(trawl::local::MemoryStore::default());
}

#[cfg(feature = "disk-state")]
mod sqlite {
    fn store() -> trawl::local::DiskStore {
        let dir = std::env::temp_dir().join(format!(
            "trawl-contract-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        trawl::local::DiskStore::open(&dir).expect("opening a fresh state directory")
    }

    trawl::state_store_contract!(store());
}
