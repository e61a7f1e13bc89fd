//! DNS_CHECK's response parser (`probe::dns::check_response`): header, the question
//! (compressed names, pointer loops), and every answer record's framing.
//!
//! Input: one byte choosing the query (name and type), then the response; the query id
//! is taken from the response so the fuzzer gets past the id check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd_check::probe::dns;

const QUERIES: [(&str, &str); 6] = [
    ("example.com", "A"),
    ("www.example.org.", "AAAA"),
    (".", "NS"),
    ("_sip._tcp.example.net", "SOA"),
    ("MiXeD.Example.COM", "TXT"),
    ("a.b.c.d.e.f.g.example", "MX"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else {
        return;
    };
    let (name, ty) = QUERIES[usize::from(sel) % QUERIES.len()];
    let qtype = dns::qtype(ty).expect("known type");
    let id = match msg {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    if let Ok(n) = dns::check_response(msg, id, name, qtype) {
        assert!(n > 0, "success means at least one answer");
        assert!(
            msg.len() >= 12 + 5 + n * 11,
            "{n} answers cannot fit {} bytes",
            msg.len()
        );
    }
    // The query we send parses as a question, not as an answer.
    let q = dns::encode_query(id, name, qtype).expect("query encodes");
    assert_eq!(dns::check_response(&q, id, name, qtype).ok(), None);
});
