// A suspended tealet belongs to the stack of the thread that made it: it must not be Send.
fn assert_send<T: Send>(_: T) {}

fn main() {
    let r = tealet::spawn(|back| (back, 0u8)).unwrap();
    if let Some(h) = r.from {
        assert_send(h);
    }
}
