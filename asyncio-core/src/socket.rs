//! The socket constants asyncio's APIs take (Python's `socket` module values,
//! as on Linux).

/// Any address family (`socket.AF_UNSPEC`).
pub const AF_UNSPEC: i32 = 0;
/// Unix sockets (`socket.AF_UNIX`).
pub const AF_UNIX: i32 = 1;
/// IPv4 (`socket.AF_INET`).
pub const AF_INET: i32 = 2;
/// IPv6 (`socket.AF_INET6`).
pub const AF_INET6: i32 = 10;

/// Stream sockets (`socket.SOCK_STREAM`).
pub const SOCK_STREAM: i32 = 1;
/// Datagram sockets (`socket.SOCK_DGRAM`).
pub const SOCK_DGRAM: i32 = 2;
/// Raw sockets (`socket.SOCK_RAW`).
pub const SOCK_RAW: i32 = 3;

/// TCP (`socket.IPPROTO_TCP`).
pub const IPPROTO_TCP: i32 = 6;
/// UDP (`socket.IPPROTO_UDP`).
pub const IPPROTO_UDP: i32 = 17;

/// `getaddrinfo` flag: addresses for binding (`socket.AI_PASSIVE`).
pub const AI_PASSIVE: i32 = 0x0001;
/// `getaddrinfo` flag: fill in the canonical name (`socket.AI_CANONNAME`).
pub const AI_CANONNAME: i32 = 0x0002;
/// `getaddrinfo` flag: the host is a numeric address (`socket.AI_NUMERICHOST`).
pub const AI_NUMERICHOST: i32 = 0x0004;
/// `getaddrinfo` flag: IPv4-mapped IPv6 addresses (`socket.AI_V4MAPPED`).
pub const AI_V4MAPPED: i32 = 0x0008;
/// `getaddrinfo` flag: all addresses (`socket.AI_ALL`).
pub const AI_ALL: i32 = 0x0010;
/// `getaddrinfo` flag: only families configured locally (`socket.AI_ADDRCONFIG`).
pub const AI_ADDRCONFIG: i32 = 0x0020;
/// `getaddrinfo` flag: the port is numeric (`socket.AI_NUMERICSERV`).
pub const AI_NUMERICSERV: i32 = 0x0400;

/// `getnameinfo` flag: numeric host (`socket.NI_NUMERICHOST`).
pub const NI_NUMERICHOST: i32 = 1;
/// `getnameinfo` flag: numeric service (`socket.NI_NUMERICSERV`).
pub const NI_NUMERICSERV: i32 = 2;
/// `getnameinfo` flag: host name only, no domain (`socket.NI_NOFQDN`).
pub const NI_NOFQDN: i32 = 4;
/// `getnameinfo` flag: fail if the name is unknown (`socket.NI_NAMEREQD`).
pub const NI_NAMEREQD: i32 = 8;
/// `getnameinfo` flag: datagram service (`socket.NI_DGRAM`).
pub const NI_DGRAM: i32 = 16;

/// The name Python gives an address family (`AddressFamily.AF_INET`).
pub fn family_name(family: i32) -> String {
    match family {
        AF_UNSPEC => "AddressFamily.AF_UNSPEC".to_owned(),
        AF_UNIX => "AddressFamily.AF_UNIX".to_owned(),
        AF_INET => "AddressFamily.AF_INET".to_owned(),
        AF_INET6 => "AddressFamily.AF_INET6".to_owned(),
        n => n.to_string(),
    }
}

/// The name Python gives a socket type (`SocketKind.SOCK_STREAM`).
pub fn kind_name(kind: i32) -> String {
    match kind {
        SOCK_STREAM => "SocketKind.SOCK_STREAM".to_owned(),
        SOCK_DGRAM => "SocketKind.SOCK_DGRAM".to_owned(),
        SOCK_RAW => "SocketKind.SOCK_RAW".to_owned(),
        0 => "0".to_owned(),
        n => n.to_string(),
    }
}
