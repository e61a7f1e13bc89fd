#!/usr/bin/env python3
"""Writes the packet seed corpora (seeds/vrrp_decode, seeds/arp_frame, seeds/na_frame):
valid adverts of each version and family as keepalived sends them, laid out from the
RFCs, plus the frames vipd sends. Run from fuzz/: python3 gen_seeds.py"""
import ipaddress, os, struct

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def ip(a):
    return ipaddress.ip_address(a).packed

def pseudo4(src, dst, proto, n):
    return ip(src) + ip(dst) + bytes([0, proto]) + struct.pack("!H", n)

def pseudo6(src, dst, nh, n):
    return ip(src) + ip(dst) + struct.pack("!I", n) + bytes([0, 0, 0, nh])

def advert(version, vrid, prio, addrs, interval, auth=(0, b""), src=None, dst=None, pseudo=True):
    hdr = bytes([(version << 4) | 1, vrid, prio, len(addrs)])
    if version == 2:
        hdr += bytes([auth[0], interval])
    else:
        hdr += struct.pack("!H", interval & 0x0FFF)
    body = b"".join(ip(a) for a in addrs)
    tail = auth[1].ljust(8, b"\0") if version == 2 else b""
    msg = hdr + b"\0\0" + body + tail
    if version == 3 and ":" in src:
        c = csum(pseudo6(src, dst, 112, len(msg)) + msg)
    elif version == 3 and pseudo:
        c = csum(pseudo4(src, dst, 112, len(msg)) + msg)
    else:
        c = csum(msg)
    return msg[:6] + struct.pack("!H", c) + msg[8:]

def ipv4_packet(src, dst, ttl, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(payload), 0, 0, ttl, 112, 0, ip(src), ip(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload

def write(target, name, data):
    d = os.path.join("seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

S4, D4, S6, D6 = "192.0.2.1", "224.0.0.18", "fe80::1", "ff02::12"
v2pass = advert(2, 51, 100, ["192.168.200.16", "192.168.200.17"], 1, (1, b"1111"), S4, D4)
v2none = advert(2, 7, 255, ["198.51.100.10"], 3, (0, b""), S4, D4)
v3v4 = advert(3, 51, 150, ["192.0.2.100", "203.0.113.5"], 100, src=S4, dst=D4)
v3v4only = advert(3, 52, 100, ["192.0.2.101"], 50, src=S4, dst=D4, pseudo=False)
v3v6 = advert(3, 51, 100, ["2001:db8::100", "fe80::100"], 100, src=S6, dst=D6)
v3empty = advert(3, 9, 0, [], 100, src=S6, dst=D6)
# mode byte: 0 = whole IPv4 packet, 1 = VRRP over IPv4, 2 = over IPv6, +4 fix checksum
write("vrrp_decode", "ipv4_v2_pass", b"\x00" + ipv4_packet(S4, D4, 255, v2pass) + b"\0" * 6)
write("vrrp_decode", "ipv4_v3", b"\x00" + ipv4_packet("192.0.2.2", D4, 255, v3v4))
write("vrrp_decode", "v2_pass", b"\x01" + v2pass)
write("vrrp_decode", "v2_owner_noauth", b"\x01" + v2none)
write("vrrp_decode", "v3_v4_pseudo", b"\x01" + v3v4)
write("vrrp_decode", "v3_v4_vrrp_only", b"\x01" + v3v4only)
write("vrrp_decode", "v3_v6", b"\x02" + v3v6)
write("vrrp_decode", "v3_v6_no_address", b"\x02" + v3empty)
write("vrrp_decode", "v3_both_fixed", b"\x07" + v3v4)

mac = bytes([0x02, 0, 0, 0, 0, 1])
def garp(ipa, op=1):
    a = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ip(ipa) + (b"\0" * 6 if op == 1 else mac) + ip(ipa)
    return (b"\xff" * 6 + mac + b"\x08\x06" + a).ljust(60, b"\0")
write("arp_frame", "garp_request", garp("192.0.2.100"))
write("arp_frame", "garp_reply", garp("203.0.113.7", 2))

def na(src, target, flags=0x20, opts=True):
    icmp = bytes([136, 0, 0, 0, flags, 0, 0, 0]) + ip(target) + ((bytes([2, 1]) + mac) if opts else b"")
    c = csum(pseudo6(src, "ff02::1", 58, len(icmp)) + icmp)
    icmp = icmp[:2] + struct.pack("!H", c) + icmp[4:]
    ip6 = bytes([0x60, 0, 0, 0]) + struct.pack("!H", len(icmp)) + bytes([58, 255]) + ip(src) + ip("ff02::1")
    return bytes([0x33, 0x33, 0, 0, 0, 1]) + mac + b"\x86\xdd" + ip6 + icmp
write("na_frame", "unsolicited_na", na("fe80::1", "2001:db8::100"))
write("na_frame", "solicited_no_option", na("fe80::2", "2001:db8::1", 0x60, False))

# DNS_CHECK: responses to the target's queries (selector byte first: 0 = example.com A,
# 1 = www.example.org. AAAA, 2 = . NS), laid out per RFC 1035 §4.1 with name compression.
def qname(n):
    n = n.rstrip(".")
    return b"".join(bytes([len(l)]) + l.encode() for l in n.split(".") if l) + b"\0"

def dns(sel, ident, name, qtype, answers, rcode=0, flags=0x8180):
    h = struct.pack("!HHHHHH", ident, flags | rcode, 1, len(answers), 0, 0)
    q = qname(name) + struct.pack("!HH", qtype, 1)
    a = b"".join(b"\xc0\x0c" + struct.pack("!HHIH", t, 1, 300, len(d)) + d for t, d in answers)
    return bytes([sel]) + h + q + a
write("dns_response", "a_two_answers", dns(0, 0x1234, "example.com", 1, [(1, ip("192.0.2.1")), (1, ip("192.0.2.2"))]))
write("dns_response", "aaaa", dns(1, 0xBEEF, "www.example.org", 28, [(28, ip("2001:db8::1"))]))
write("dns_response", "root_ns", dns(2, 7, ".", 2, [(2, qname("a.root-servers.net"))]))
write("dns_response", "cname_then_a", dns(0, 9, "example.com", 1, [(5, qname("web.example.com")), (1, ip("198.51.100.7"))]))
write("dns_response", "nxdomain", dns(0, 10, "example.com", 1, [], rcode=3))
write("dns_response", "no_answer", dns(0, 11, "example.com", 1, []))

# HTTP_GET: read size byte, body limit byte (x64), then the server's bytes, in the forms
# nginx and common servers send.
def http(step, limit, text):
    return bytes([step, limit]) + text.replace(b"\n", b"\r\n")
write("http_response", "nginx_200_length", http(63, 255, b"HTTP/1.1 200 OK\nServer: nginx/1.22.1\nDate: Sun, 06 Dec 2026 12:00:00 GMT\nContent-Type: text/html\nContent-Length: 13\nConnection: close\n\n<h1>vipd</h1>"))
write("http_response", "chunked", http(7, 4, b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5;ext=1\nhello\n6\n world\n0\n\n"))
write("http_response", "continue_then_404", http(255, 1, b"HTTP/1.1 100 Continue\n\nHTTP/1.1 404 Not Found\nContent-Length: 0\n\n"))
write("http_response", "http10_eof", bytes([15, 2]) + b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nbody until close")
write("http_response", "no_content", http(31, 0, b"HTTP/1.1 204 No Content\n\n"))
write("http_response", "redirect", http(0, 8, b"HTTP/1.1 301 Moved Permanently\nLocation: /new\nContent-Length: 0\n\n"))

# SMTP_CHECK: banners and HELO replies as Postfix and Exim send them.
write("smtp_reply", "postfix_banner", b"220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n")
write("smtp_reply", "multiline", b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n")
write("smtp_reply", "exim_banner", b"220-mail.example.org ESMTP Exim 4.96 Sun, 06 Dec 2026 12:00:00 +0000\r\n220 No UCE\r\n")
write("smtp_reply", "unavailable", b"421 4.3.2 Service not available\r\n")
write("smtp_reply", "bare_lf", b"250 ok\n")

# lb_netlink: replies as the kernel sends them (native byte order, x86_64).
def nla(ty, data, nested=False):
    n = struct.pack("=HH", 4 + len(data), ty | (0x8000 if nested else 0)) + data
    return n + b"\0" * (-len(n) % 4)

def nlmsg(ty, flags, seq, payload):
    return struct.pack("=IHHII", 16 + len(payload), ty, flags, seq, 4242) + payload + b"\0" * (-len(payload) % 4)

GENL = bytes([1, 1, 0, 0])  # genlmsghdr: cmd, version
svc4 = nla(1, b"".join([
    nla(1, struct.pack("=H", 2)), nla(2, struct.pack("=H", 6)), nla(3, ip("192.0.2.10").ljust(16, b"\0")),
    nla(4, struct.pack("!H", 80)), nla(6, b"wrr\0"), nla(7, struct.pack("=II", 0, 0xFFFFFFFF)),
    nla(8, struct.pack("=I", 0)), nla(9, struct.pack("!I", 0xFFFFFFFF)), nla(10, nla(1, b"\0" * 4), True),
]), True)
svc6 = nla(1, b"".join([
    nla(1, struct.pack("=H", 10)), nla(5, struct.pack("=I", 7)), nla(6, b"sh\0"),
    nla(7, struct.pack("=II", 1, 0xFFFFFFFF)), nla(8, struct.pack("=I", 300)), nla(9, struct.pack("=I", 128)),
    nla(11, b"sip\0"),
]), True)
dest = nla(2, b"".join([
    nla(1, ip("198.51.100.20").ljust(16, b"\0")), nla(2, struct.pack("!H", 8080)), nla(3, struct.pack("=I", 0)),
    nla(4, struct.pack("=I", 1)), nla(5, struct.pack("=I", 0)), nla(6, struct.pack("=I", 0)),
    nla(11, struct.pack("=H", 2)), nla(7, struct.pack("=I", 3)),
]), True)
done = nlmsg(3, 2, 5, struct.pack("=i", 0))
write("lb_netlink", "ipvs_services", nlmsg(36, 2, 5, GENL + svc4) + nlmsg(36, 2, 5, GENL + svc6) + done)
write("lb_netlink", "ipvs_dests", nlmsg(36, 2, 6, GENL + dest) + done)
ctrl = bytes([1, 2, 0, 0]) + nla(2, b"IPVS\0") + nla(1, struct.pack("=H", 36))
write("lb_netlink", "genl_family", nlmsg(16, 0, 3, ctrl))
req = nlmsg((10 << 8) | 12, 5, 9, b"\x02\x00\x00\x0a")
ack_err = struct.pack("=i", -2) + req[:16] + nla(1, b"No such file or directory\0") + nla(2, struct.pack("=I", 20))
write("lb_netlink", "nft_ext_ack_capped", nlmsg(2, 0x300, 9, ack_err))
write("lb_netlink", "ack", nlmsg(2, 0x100, 9, struct.pack("=i", 0) + req[:16]))
counter = nla(1, b"counter\0") + nla(2, nla(1, struct.pack("!Q", 1500)) + nla(2, struct.pack("!Q", 3)), True)
elem = nla(1, nla(1, nla(1, ip("192.0.2.10") + struct.pack("!H", 80) + b"\0\0"), True)
              + nla(2, nla(1, nla(1, b"\0\0\0\x01"), True), True)
              + nla(7, counter, True), True)
elems = b"\x02\x00\x00\x0a" + nla(1, b"vipd\0") + nla(2, b"svc\0") + nla(3, elem, True)
write("lb_netlink", "nft_set_elems", nlmsg((10 << 8) | 12, 2, 11, elems) + done)

# rtnetlink: an address dump, a neighbour dump, link events and request acks.
ifaddr = struct.pack("=BBBBI", 2, 24, 0x80, 0, 2)  # ifaddrmsg: AF_INET /24 permanent, ifindex 2
addr4 = ifaddr + nla(1, ip("192.0.2.100")) + nla(2, ip("192.0.2.100")) + nla(3, b"eth0\0") + nla(11, b"v") \
    + nla(8, struct.pack("=I", 0x80)) + nla(6, struct.pack("=IIII", 0xFFFFFFFF, 0xFFFFFFFF, 100, 100))
addr6 = struct.pack("=BBBBI", 10, 64, 0, 0, 2) + nla(1, ip("2001:db8::100"))
write("rtnetlink", "address_dump", nlmsg(20, 2, 7, addr4) + nlmsg(20, 2, 7, addr6) + nlmsg(3, 2, 7, struct.pack("=i", 0)))
ndmsg = struct.pack("=BxxxiHBB", 2, 2, 0x02, 0, 1)  # AF_INET, ifindex 2, REACHABLE
neigh = ndmsg + nla(1, ip("192.0.2.1")) + nla(2, mac) + nla(4, struct.pack("=I", 1))
ndmsg6 = struct.pack("=BxxxiHBB", 10, 3, 0x04, 0, 1)  # AF_INET6, STALE
neigh6 = ndmsg6 + nla(1, ip("fe80::2")) + nla(2, bytes([2, 0, 0, 0, 0, 2]))
write("rtnetlink", "neighbour_dump", nlmsg(28, 2, 8, neigh) + nlmsg(28, 2, 8, neigh6) + nlmsg(3, 2, 8, struct.pack("=i", 0)))
ifinfo = struct.pack("=BxHiII", 0, 1, 2, 0x11043, 0xFFFFFFFF)  # eth0 up, running
link = ifinfo + nla(3, b"eth0\0") + nla(4, struct.pack("=I", 1500)) + nla(1, mac) + nla(16, b"\x06")
write("rtnetlink", "link_events", nlmsg(16, 0, 0, link) + nlmsg(17, 0, 0, struct.pack("=BxHiII", 0, 1, 3, 0, 0)))
write("rtnetlink", "ack", nlmsg(2, 0x100, 12, struct.pack("=i", 0) + nlmsg(20, 5, 12, addr6)[:16]))
write("rtnetlink", "nack_eexist", nlmsg(2, 0, 13, struct.pack("=i", -17) + nlmsg(20, 5, 13, addr4)))
