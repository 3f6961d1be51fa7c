//! Gives the shared library its SONAME, libsharedarea.so.<major>: the major
//! version is the C ABI's version (SHAREDAREA_ABI_VERSION), so programs linked
//! against one ABI never load another. For programs linked straight out of the
//! build directory (`-Ltarget/release -lsharedarea`), a libsharedarea.so.<major>
//! link next to the library makes that name resolve there too. The library is
//! marked never to be unloaded (`-z nodelete`; see the hold records' exit
//! destructor in src/lock/holds.rs).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let soname = format!("libsharedarea.so.{major}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // Never unloaded by dlclose: a thread that used a lock has the library's
    // pthread-key destructor armed, which runs when the thread exits.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // OUT_DIR is <profile dir>/build/<package>-<hash>/out.
    if let Some(profile) = std::env::var_os("OUT_DIR")
        .map(std::path::PathBuf::from)
        .and_then(|out| out.ancestors().nth(3).map(std::path::Path::to_path_buf))
    {
        let link = profile.join(&soname);
        if std::fs::symlink_metadata(&link).is_err() {
            let _ = std::os::unix::fs::symlink("libsharedarea.so", &link);
        }
    }
}
