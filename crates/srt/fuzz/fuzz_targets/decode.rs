//! The packet decoder on arbitrary datagrams: never panics, and whatever decodes re-encodes to
//! bytes that decode to the same packet.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stadion_srt::packet::Packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::decode(Bytes::copy_from_slice(data)) {
        let mut out = Vec::new();
        packet.encode(&mut out);
        assert_eq!(Packet::decode(out.into()), Ok(packet));
    }
});
