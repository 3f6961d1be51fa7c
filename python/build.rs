//! The extension embeds the core, which arms a pthread-key destructor in threads
//! that take an area's lock (src/lock/holds.rs): the module is marked never to be
//! unloaded, so that destructor's code is always there when a thread exits.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
