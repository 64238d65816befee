//! Every parser on arbitrary bytes: never panics, and what parses re-encodes to bytes that
//! parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stadion_mpegts::{Pat, PesHeader, Pmt, RtpPacket, TsAlignment, TsPacket};

fuzz_target!(|data: &[u8]| {
    let _ = TsAlignment::check(data);
    let _ = TsAlignment::check_packets(data);
    let _ = RtpPacket::parse(data);
    if let Ok(p) = TsPacket::parse(data)
        && let Ok(bytes) = p.encode()
    {
        let again = TsPacket::parse(&bytes).expect("an encoded packet parses");
        assert_eq!(again.header, p.header);
        assert_eq!(again.payload, p.payload);
    }
    if let Ok(h) = PesHeader::parse(data) {
        // The encoder writes no stuffing, so only the header length may differ.
        let again = PesHeader::parse(&h.encode()).expect("an encoded header parses");
        assert_eq!(
            PesHeader {
                header_len: again.header_len,
                ..h
            },
            again
        );
    }
    if let Ok(pat) = Pat::parse(data) {
        assert_eq!(Pat::parse(&pat.to_section()).ok(), Some(pat));
    }
    if let Ok(pmt) = Pmt::parse(data) {
        assert_eq!(Pmt::parse(&pmt.to_section()).ok(), Some(pmt));
    }
});
