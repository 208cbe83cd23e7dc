//! Rebuilds the crate when a console file is added, changed or removed: rust-embed compiles
//! the folder in, but Cargo only tracks the files that existed at the last build.

fn main() {
    println!("cargo:rerun-if-changed=console");
}
