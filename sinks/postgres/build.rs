//! Rebuilds the crate when a migration is added. `sqlx::migrate!` embeds `migrations/` at
//! compile time, but Cargo reruns a macro only when a file it already knows changes; a new
//! migration is a new file, so without this a binary built before it would keep migrating to
//! the old schema (as the sqlx documentation warns).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
