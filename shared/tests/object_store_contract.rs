//! The object store contract (`trawl::testing::contract`) on the in-process stores: memory,
//! and files under a directory. S3 runs the same cases in `tests/e2e/tests/contract.rs`.

mod memory {
    trawl::object_store_contract!(trawl::local::MemoryObjects::default());
}

mod files {
    fn objects() -> trawl::local::FileObjects {
        let dir = std::env::temp_dir().join(format!(
            "trawl-object-contract-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        trawl::local::FileObjects::new(dir)
    }

    trawl::object_store_contract!(objects());
}
