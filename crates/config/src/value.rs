//! Parsers for keepalived's scalar argument syntaxes.

use std::net::IpAddr;
use std::time::Duration;

/// `<BOOL>`: on|off|true|false|yes|no (case-insensitive, as keepalived).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// `<TIMER>`: decimal seconds such as `3`, `0.01` or `2.71828`, exact to the microsecond
/// (further digits are dropped; no float rounding surprises like 0.1 s → 99999 µs).
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut micros = 0u32;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += u32::from(b - b'0') * 10u32.pow(5 - i as u32);
    }
    Some(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
}

/// keepalived's `read_decimal_unsigned` with 3 decimals, as BFD's `min_rx`, `min_tx` and
/// `idle_tx` take them: milliseconds such as `10`, `3.312` or `+5.`, to the microsecond;
/// returned in microseconds. More than 3 decimals is an error, as in keepalived.
pub fn parse_millis(s: &str) -> Option<u64> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || frac.len() > 3
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let ms: u64 = int.parse().ok()?;
    let mut micros = 0u64;
    for (i, b) in frac.bytes().enumerate() {
        micros += u64::from(b - b'0') * 10u64.pow(2 - i as u32);
    }
    ms.checked_mul(1000)?.checked_add(micros)
}

/// Plain non-negative integer (no sign, no hex): what keepalived's numeric keywords take.
pub fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `ADDR[/MASK]`; the prefix defaults to the full address length.
pub fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match mask {
        None => max,
        Some(m) => match parse_uint(m) {
            Some(p) if p <= u64::from(max) => p as u8,
            _ => return Err(format!("invalid prefix length `/{m}` (must be 0..={max})")),
        },
    };
    Ok((addr, prefix))
}

pub fn family(addr: &IpAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// keepalived's `umask NUMBER|BITS`: a number (decimal, `0` octal or `0x` hex) or
/// `I{R|W|X}{USR|GRP|OTH}` and `IRWX{U|G|O}` bits joined by `|`.
pub fn parse_umask(text: &str) -> Result<u32, String> {
    let text: String = text.split_whitespace().collect();
    let first = text.chars().next().ok_or("umask: no value")?;
    let mask = if first.is_ascii_digit() {
        let parsed = if let Some(hex) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
            u32::from_str_radix(hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            u32::from_str_radix(&text[1..], 8)
        } else {
            text.parse()
        };
        parsed.map_err(|_| format!("umask: `{text}` is not a number"))?
    } else {
        let mut mask = 0;
        for bit in text.split('|') {
            mask |= match bit {
                "IRUSR" => 0o400,
                "IWUSR" => 0o200,
                "IXUSR" => 0o100,
                "IRWXU" => 0o700,
                "IRGRP" => 0o040,
                "IWGRP" => 0o020,
                "IXGRP" => 0o010,
                "IRWXG" => 0o070,
                "IROTH" => 0o004,
                "IWOTH" => 0o002,
                "IXOTH" => 0o001,
                "IRWXO" => 0o007,
                other => return Err(format!("umask: unknown bit `{other}`")),
            };
        }
        mask
    };
    if mask > 0o777 {
        return Err(format!("umask: {mask:#o} is more than 0777"));
    }
    Ok(mask)
}

/// Where `snmp_socket` says the AgentX master listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentxAddress {
    /// `unix:PATH` or `/PATH`.
    Unix(String),
    /// `tcp:HOST:PORT`, `tcp6:[ADDR]:PORT` or `HOST:PORT`.
    Tcp(String),
}

/// `snmp_socket` as net-snmp reads an AgentX address (`unix:/var/agentx/master` when
/// not given).
pub fn parse_agentx_address(text: &str) -> Result<AgentxAddress, String> {
    let s = text.trim();
    if let Some(p) = s.strip_prefix("unix:") {
        return Ok(AgentxAddress::Unix(p.to_string()));
    }
    if s.starts_with('/') {
        return Ok(AgentxAddress::Unix(s.to_string()));
    }
    // net-snmp's master also listens on `udp:`, takes the Open, but cannot send
    // requests to the subagent ("unknown addr type"): refused.
    let (udp, rest) = match s.split_once(':') {
        Some(("tcp" | "tcp6", rest)) => (false, rest),
        Some(("udp" | "udp6", rest)) => (true, rest),
        _ => (false, s),
    };
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    match (port_ok, udp) {
        (true, false) => Ok(AgentxAddress::Tcp(rest.to_string())),
        (true, true) => Err(format!(
            "snmp_socket `{s}`: AgentX over UDP does not work with net-snmp's master (it \
             cannot send requests to a UDP subagent); use unix:PATH or tcp:HOST:PORT: no SNMP"
        )),
        (false, _) => Err(format!(
            "snmp_socket `{s}` is not an AgentX address vipd can use (unix:PATH, /PATH, \
             tcp:HOST:PORT or udp:HOST:PORT): no SNMP"
        )),
    }
}

/// keepalived's `smtp_server HOST [PORT]` (port 25 unless given; 1..=65535).
pub fn parse_smtp_server(text: &str) -> Result<(String, u16), String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [host] => Ok((host.to_string(), 25)),
        [host, port] => Ok((
            host.to_string(),
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("smtp_server: `{port}` is not a port"))?,
        )),
        _ => Err(format!("smtp_server: `{text}`: use HOST [PORT]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_socket_forms() {
        use AgentxAddress::*;
        for (text, want) in [
            ("unix:/var/agentx/master", Unix("/var/agentx/master".into())),
            ("/tmp/x", Unix("/tmp/x".into())),
            ("tcp:localhost:705", Tcp("localhost:705".into())),
            ("tcp6:[::1]:705", Tcp("[::1]:705".into())),
            ("192.0.2.1:705", Tcp("192.0.2.1:705".into())),
        ] {
            assert_eq!(parse_agentx_address(text), Ok(want), "{text}");
        }
        for bad in ["nonsense", "tcp:host", "udp:1.2.3.4:705", ":705"] {
            assert!(parse_agentx_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bools() {
        for t in ["on", "true", "yes", "YES"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["off", "false", "no"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("1"), None);
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(parse_seconds("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_seconds("0.01"), Some(Duration::from_millis(10)));
        assert_eq!(parse_seconds("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(parse_seconds(".5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_seconds("2.71828"),
            Some(Duration::from_micros(2_718_280))
        );
        assert_eq!(parse_seconds("0.0000019"), Some(Duration::from_micros(1)));
        for bad in ["", ".", "-1", "1e3", "1.2.3", "abc", "1s"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn millis_like_keepalived() {
        assert_eq!(parse_millis("10"), Some(10_000));
        assert_eq!(parse_millis("3.312"), Some(3_312));
        assert_eq!(parse_millis("1500."), Some(1_500_000));
        assert_eq!(parse_millis("+1500"), Some(1_500_000));
        assert_eq!(parse_millis("0.5"), Some(500));
        for bad in ["", ".", "+", ".5", "-1", "3.3125", "1e3", "0x5dc", "1.2.3"] {
            assert_eq!(parse_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn uints() {
        assert_eq!(parse_uint("255"), Some(255));
        assert_eq!(parse_uint("+1"), None);
        assert_eq!(parse_uint("-1"), None);
        assert_eq!(parse_uint("0x10"), None);
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("192.0.2.1/24").unwrap(),
            ("192.0.2.1".parse().unwrap(), 24)
        );
        assert_eq!(parse_prefix("192.0.2.1").unwrap().1, 32);
        assert_eq!(parse_prefix("2001:db8::1").unwrap().1, 128);
        assert_eq!(parse_prefix("2001:db8::1/64").unwrap().1, 64);
        assert!(parse_prefix("192.0.2.1/33").unwrap_err().contains("0..=32"));
        assert!(parse_prefix("eth0")
            .unwrap_err()
            .contains("not an IP address"));
    }

    #[test]
    fn umask_as_keepalived() {
        assert_eq!(parse_umask("022"), Ok(0o022));
        assert_eq!(parse_umask("0x12"), Ok(0o022));
        assert_eq!(parse_umask("18"), Ok(0o022));
        assert_eq!(parse_umask("IWGRP | IRWXO"), Ok(0o027));
        assert_eq!(
            parse_umask("0999"),
            Err("umask: `0999` is not a number".into())
        );
        assert_eq!(parse_umask("IFOO"), Err("umask: unknown bit `IFOO`".into()));
        assert_eq!(
            parse_umask("01777"),
            Err("umask: 0o1777 is more than 0777".into())
        );
    }

    #[test]
    fn smtp_server_host_and_port() {
        assert_eq!(
            parse_smtp_server("192.0.2.25"),
            Ok(("192.0.2.25".into(), 25))
        );
        assert_eq!(parse_smtp_server("mx 2525"), Ok(("mx".into(), 2525)));
        assert_eq!(
            parse_smtp_server("mx 0"),
            Err("smtp_server: `0` is not a port".into())
        );
        assert_eq!(
            parse_smtp_server("mx 99999"),
            Err("smtp_server: `99999` is not a port".into())
        );
        assert_eq!(
            parse_smtp_server("mx 25 x"),
            Err("smtp_server: `mx 25 x`: use HOST [PORT]".into())
        );
    }
}
