// Borrowed data must not cross a switch: `run` must be 'static.
fn main() {
    let local = String::from("on the spawner's stack");
    let r = &local;
    let _ = tealet::spawn(move |back| (back, r.len()));
}
