//! `getaddrinfo` / `getnameinfo`, run in the loop's default executor as
//! CPython does, with CPython's results and `socket.gaierror`s.

use std::net::{IpAddr, SocketAddr};

use asyncio_core::base_events::{AddrInfo, AddrInfoQuery, LocalBoxFuture};
use asyncio_core::socket::{AF_INET, AF_INET6, AF_UNSPEC, SOCK_DGRAM, SOCK_STREAM};
use asyncio_core::{Address, Error, EventLoop, Result};

const IPPROTO_TCP: i32 = 6;
const IPPROTO_UDP: i32 = 17;

fn lookup_error(e: dns_lookup::LookupError) -> Error {
    let code = e.error_num();
    if code == libc::EAI_SYSTEM {
        return Error::from(std::io::Error::from(e));
    }
    let text = std::io::Error::from(e).to_string();
    let text = text
        .strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_owned();
    Error::gaierror(code, text)
}

/// Refuses what C's `getaddrinfo(3)` cannot be given: a host or service
/// with a NUL byte (CPython: `ValueError('embedded null character')`), and
/// neither host nor service (`socket.gaierror(-2, 'Name or service not
/// known')`, which glibc returns and CPython passes on).
pub(crate) fn check_query(host: Option<&str>, port: Option<&str>) -> Result<()> {
    if host.is_some_and(|h| h.contains('\0')) || port.is_some_and(|p| p.contains('\0')) {
        return Err(Error::value("embedded null character"));
    }
    if host.is_none() && port.is_none() {
        return Err(Error::gaierror(
            libc::EAI_NONAME,
            "Name or service not known",
        ));
    }
    Ok(())
}

/// The blocking `getaddrinfo(3)` call, with Python's result shape.
pub(crate) fn getaddrinfo_blocking(query: &AddrInfoQuery) -> Result<Vec<AddrInfo>> {
    check_query(query.host.as_deref(), query.port.as_deref())?;
    let hints = dns_lookup::AddrInfoHints {
        flags: query.flags,
        address: query.family,
        socktype: query.type_,
        protocol: query.proto,
    };
    let iter = dns_lookup::getaddrinfo(query.host.as_deref(), query.port.as_deref(), Some(hints))
        .map_err(lookup_error)?;
    let mut out = Vec::new();
    for info in iter {
        let info = info.map_err(Error::from)?;
        out.push(AddrInfo {
            family: info.address,
            type_: info.socktype,
            proto: info.protocol,
            canonname: info.canonname.unwrap_or_default(),
            sockaddr: Address::Inet(info.sockaddr),
        });
    }
    Ok(out)
}

/// CPython's `_ipaddr_info`: a numeric host needs no resolver call.
pub(crate) fn numeric_addrinfo(
    host: &str,
    port: u16,
    family: i32,
    type_: i32,
    proto: i32,
) -> Option<Vec<AddrInfo>> {
    let ip: IpAddr = host.parse().ok()?;
    let af = if ip.is_ipv4() { AF_INET } else { AF_INET6 };
    if family != AF_UNSPEC && family != af {
        return None;
    }
    // As CPython's `_ipaddr_info`, which overrides a TCP/UDP `proto` by
    // the socket type.
    if ![0, IPPROTO_TCP, IPPROTO_UDP].contains(&proto) {
        return None;
    }
    let proto = match type_ {
        SOCK_STREAM => IPPROTO_TCP,
        SOCK_DGRAM => IPPROTO_UDP,
        _ => return None,
    };
    Some(vec![AddrInfo {
        family: af,
        type_,
        proto,
        canonname: String::new(),
        sockaddr: Address::Inet(SocketAddr::new(ip, port)),
    }])
}

/// `loop.getaddrinfo(...)`: the lookup runs in the default executor.
pub(crate) fn getaddrinfo(
    loop_: &EventLoop,
    query: AddrInfoQuery,
) -> LocalBoxFuture<'static, Result<Vec<AddrInfo>>> {
    if let Err(e) = check_query(query.host.as_deref(), query.port.as_deref()) {
        return Box::pin(async move { Err(e) });
    }
    let started = loop_.run_in_executor(None, move || getaddrinfo_blocking(&query));
    Box::pin(async move { started?.take().await? })
}

/// `loop.getnameinfo(sockaddr, flags)`.
pub(crate) fn getnameinfo(
    loop_: &EventLoop,
    sockaddr: SocketAddr,
    flags: i32,
) -> LocalBoxFuture<'static, Result<(String, String)>> {
    let started = loop_.run_in_executor(None, move || {
        dns_lookup::getnameinfo(&sockaddr, flags).map_err(lookup_error)
    });
    Box::pin(async move { started?.take().await? })
}

/// Resolves `(host, port)` for a socket of `type_`, as CPython's
/// `_ensure_resolved` does (numeric hosts without a lookup).
pub(crate) async fn ensure_resolved(
    loop_: &EventLoop,
    host: Option<&str>,
    port: Option<u16>,
    family: i32,
    type_: i32,
    proto: i32,
    flags: i32,
) -> Result<Vec<AddrInfo>> {
    if let Some(h) = host {
        if h.contains('\0') {
            return Err(Error::value("embedded null character"));
        }
        if let Some(infos) = numeric_addrinfo(h, port.unwrap_or(0), family, type_, proto) {
            return Ok(infos);
        }
    }
    getaddrinfo(
        loop_,
        AddrInfoQuery {
            host: host.map(str::to_owned),
            port: port.map(|p| p.to_string()),
            family,
            type_,
            proto,
            flags,
        },
    )
    .await
}
