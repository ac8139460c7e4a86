//! A plain `wasi:cli` command, not a Warden tool plugin: it exists so that tests can check that
//! the host refuses a component of another world.

fn main() {
    println!("hello");
}
