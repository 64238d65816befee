//! The TR 101 290 monitor on arbitrary bytes cut into arbitrary pieces, with time moving on
//! by arbitrary steps: never panics, and it counts every whole packet it was given.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use stadion_mpegts::Tr101290Monitor;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let mut m = Tr101290Monitor::default();
    // Pieces of 1..=256 bytes; the piece length doubles as the time step.
    for piece in rest.chunks(usize::from(step) + 1) {
        now += Duration::from_millis(u64::from(step) * 3);
        m.feed(now, piece);
        m.tick(now);
        while m.poll_event().is_some() {}
    }
    assert!(m.packets() <= (rest.len() / 188) as u64 + 1);
});
