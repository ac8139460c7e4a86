//! `wit/` in this package is a copy of the repository's contract (`/wit`), so that the package
//! builds without the repository around it. This test fails when the two differ.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn wit_files(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wit"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

#[test]
fn the_packaged_wit_is_the_repositorys_contract() {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contract = package.join("../../wit");
    if !contract.join("world.wit").is_file() {
        // Built from a package (crates.io, a copied folder): there is no repository to compare.
        eprintln!("skipped: no repository contract at {}", contract.display());
        return;
    }
    let ours = wit_files(&package.join("wit"));
    let theirs = wit_files(&contract);
    let names = |files: &BTreeMap<String, String>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&ours),
        names(&theirs),
        "plugins/sdk/wit and wit/ hold different files; copy wit/*.wit into plugins/sdk/wit"
    );
    for (name, text) in &theirs {
        assert!(
            ours[name] == *text,
            "plugins/sdk/wit/{name} differs from wit/{name}; copy wit/*.wit into plugins/sdk/wit"
        );
    }
}
