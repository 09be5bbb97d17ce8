//! A command line: the bytes split at NUL into up to eight arguments (any
//! bytes, not only UTF-8), run in process by `journeyc::cli::run` in a
//! copy of the shipped project. Every command line ends with a status,
//! never a panic.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn project() -> &'static tempfile::TempDir {
    static PROJECT: OnceLock<tempfile::TempDir> = OnceLock::new();
    PROJECT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../journeys");
        copy(&shipped, dir.path());
        std::env::set_current_dir(dir.path()).expect("enter the project");
        dir
    })
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    project();
    let args: Vec<OsString> = std::iter::once(OsString::from("journeyc"))
        .chain(
            bytes
                .split(|byte| *byte == 0)
                .take(8)
                .map(|arg| OsString::from_vec(arg.to_vec())),
        )
        .collect();
    let _ = journeyc::cli::run(args, &mut std::io::sink(), &mut std::io::sink());
});
