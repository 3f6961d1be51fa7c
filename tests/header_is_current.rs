//! include/sharedarea.h is generated from src/ffi by cbindgen and committed; this
//! test fails when it is stale. Regenerate with:
//!     SHAREDAREA_BLESS=1 cargo test --test header_is_current

use std::path::Path;

#[test]
fn header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut fresh);
    let path = root.join("include/sharedarea.h");
    if std::env::var_os("SHAREDAREA_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/sharedarea.h");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/sharedarea.h is stale: run `SHAREDAREA_BLESS=1 cargo test --test header_is_current` and commit it"
    );
}

#[test]
fn header_version_matches_the_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/sharedarea.h")).unwrap();
    let line = format!(
        "#define SHAREDAREA_ABI_VERSION {}",
        sharedarea::sharedarea_abi_version()
    );
    assert!(header.contains(&line), "header lacks `{line}`");
}
