//! Prints the path of the flatc binary built by the `flatc` crate, so that
//! `wire/schema/regenerate.sh` can run the exact compiler version that matches
//! the `flatbuffers` runtime crate (flatc 23.5.26 output compiles against 25.x).
fn main() {
    println!("{}", flatc::flatc().display());
}
