//! `loop.getaddrinfo` / `loop.getnameinfo` compared with CPython's
//! `socket.getaddrinfo` / `socket.getnameinfo` on the same inputs (CPython
//! runs as a child process: `PYENV_VERSION=3.13.0 python3`).

mod net_common;

use std::net::SocketAddr;
use std::process::Command;

use asyncio::socket::{
    AF_INET, AF_INET6, AF_UNSPEC, AI_CANONNAME, AI_NUMERICHOST, AI_PASSIVE, NI_NUMERICHOST,
    NI_NUMERICSERV, SOCK_DGRAM, SOCK_STREAM,
};
use asyncio::{AddrInfo, ErrorKind};

/// One getaddrinfo call: host, port, family, type, proto, flags.
#[derive(Clone, Debug)]
struct Case {
    host: Option<&'static str>,
    port: Option<&'static str>,
    family: i32,
    type_: i32,
    proto: i32,
    flags: i32,
}

const fn case(
    host: Option<&'static str>,
    port: Option<&'static str>,
    family: i32,
    type_: i32,
    flags: i32,
) -> Case {
    Case {
        host,
        port,
        family,
        type_,
        proto: 0,
        flags,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(Some("localhost"), Some("80"), AF_UNSPEC, 0, 0),
        case(Some("localhost"), Some("80"), AF_UNSPEC, SOCK_STREAM, 0),
        case(Some("localhost"), Some("http"), AF_INET, SOCK_STREAM, 0),
        case(Some("localhost"), Some("80"), AF_INET6, SOCK_STREAM, 0),
        case(Some("127.0.0.1"), Some("80"), AF_UNSPEC, 0, 0),
        case(Some("127.0.0.1"), None, AF_UNSPEC, SOCK_DGRAM, 0),
        case(Some("::1"), Some("80"), AF_UNSPEC, SOCK_STREAM, 0),
        case(Some("::1"), Some("443"), AF_INET6, 0, 0),
        case(None, Some("80"), AF_UNSPEC, SOCK_STREAM, AI_PASSIVE),
        case(None, Some("8080"), AF_UNSPEC, 0, AI_PASSIVE),
        case(None, Some("80"), AF_UNSPEC, SOCK_STREAM, 0),
        case(
            Some("localhost"),
            Some("80"),
            AF_UNSPEC,
            SOCK_STREAM,
            AI_CANONNAME,
        ),
        case(
            Some("127.0.0.1"),
            Some("80"),
            AF_INET,
            SOCK_STREAM,
            AI_CANONNAME,
        ),
        case(
            Some("127.0.0.1"),
            Some("80"),
            AF_UNSPEC,
            SOCK_STREAM,
            AI_NUMERICHOST,
        ),
        case(
            Some("localhost"),
            Some("80"),
            AF_UNSPEC,
            SOCK_STREAM,
            AI_NUMERICHOST,
        ),
        case(
            Some("nonexistent.invalid"),
            Some("80"),
            AF_UNSPEC,
            SOCK_STREAM,
            0,
        ),
        case(
            Some("127.0.0.1"),
            Some("no-such-service"),
            AF_UNSPEC,
            SOCK_STREAM,
            0,
        ),
    ]
}

fn py_arg<T: std::fmt::Display>(v: Option<T>) -> String {
    match v {
        Some(s) => format!("'{s}'"),
        None => "None".to_owned(),
    }
}

/// Runs `script` under CPython 3.13 and returns its standard output.
fn python(script: &str) -> String {
    let out = Command::new("python3")
        .env("PYENV_VERSION", "3.13.0")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// CPython's answer for each case: one block of lines per case.
fn python_getaddrinfo(cases: &[Case]) -> Vec<Vec<String>> {
    let mut script = String::from(
        "import socket\n\
         def q(host, port, family, type, proto, flags):\n\
         \x20   try:\n\
         \x20       res = socket.getaddrinfo(host, port, family, type, proto, flags)\n\
         \x20   except socket.gaierror as e:\n\
         \x20       print('ERR', e.errno, str(e), sep='\\t')\n\
         \x20   else:\n\
         \x20       for fam, typ, pr, canon, sa in res:\n\
         \x20           print(int(fam), int(typ), pr, canon, repr(sa), sep='\\t')\n\
         \x20           print('REPR', repr((fam, typ, pr, canon, sa)), sep='\\t')\n\
         \x20   print('END')\n",
    );
    for c in cases {
        script.push_str(&format!(
            "q({}, {}, {}, {}, {}, {})\n",
            py_arg(c.host),
            py_arg(c.port),
            c.family,
            c.type_,
            c.proto,
            c.flags
        ));
    }
    let out = python(&script);
    let mut blocks = Vec::new();
    let mut cur = Vec::new();
    for line in out.lines() {
        if line == "END" {
            blocks.push(std::mem::take(&mut cur));
        } else {
            cur.push(line.to_owned());
        }
    }
    assert_eq!(blocks.len(), cases.len(), "{out}");
    blocks
}

fn rust_lines(result: &asyncio::Result<Vec<AddrInfo>>, with_repr: bool) -> Vec<String> {
    match result {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::OSError);
            assert_eq!(e.python_name(), "gaierror");
            vec![format!("ERR\t{}\t{}", e.raw_os_error().expect("errno"), e)]
        }
        Ok(infos) => {
            let mut lines = Vec::new();
            for i in infos {
                lines.push(format!(
                    "{}\t{}\t{}\t{}\t{:?}",
                    i.family, i.type_, i.proto, i.canonname, i.sockaddr
                ));
                if with_repr {
                    lines.push(format!("REPR\t{i:?}"));
                }
            }
            lines
        }
    }
}

async fn rust_getaddrinfo(c: &Case) -> asyncio::Result<Vec<AddrInfo>> {
    let loop_ = asyncio::get_running_loop()?;
    loop_
        .getaddrinfo(c.host, c.port)
        .family(c.family)
        .type_(c.type_)
        .proto(c.proto)
        .flags(c.flags)
        .await
}

#[asyncio::test]
async fn getaddrinfo_matches_python() -> asyncio::Result<()> {
    let cases = cases();
    let expected = python_getaddrinfo(&cases);
    for (c, want) in cases.iter().zip(expected) {
        let want: Vec<String> = want
            .into_iter()
            .filter(|l| !l.starts_with("REPR"))
            .collect();
        let got = rust_getaddrinfo(c).await;
        assert_eq!(rust_lines(&got, false), want, "{c:?}");
    }
    Ok(())
}

#[asyncio::test]
async fn getaddrinfo_result_repr_matches_python() -> asyncio::Result<()> {
    let cases = cases();
    let expected = python_getaddrinfo(&cases);
    for (c, want) in cases.iter().zip(expected) {
        let got = rust_getaddrinfo(c).await;
        if got.is_err() {
            continue;
        }
        let want: Vec<String> = want.into_iter().filter(|l| l.starts_with("REPR")).collect();
        let got: Vec<String> = rust_lines(&got, true)
            .into_iter()
            .filter(|l| l.starts_with("REPR"))
            .collect();
        assert_eq!(got, want, "{c:?}");
    }
    Ok(())
}

#[asyncio::test]
async fn getaddrinfo_unknown_name_is_a_gaierror() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let err = loop_
        .getaddrinfo("nonexistent.invalid", 80)
        .await
        .unwrap_err();
    assert_eq!(err.python_name(), "gaierror");
    let code = err.raw_os_error().expect("code");
    assert!(code == -2 || code == -3, "{code}");
    assert!(err.to_string().starts_with(&format!("[Errno {code}] ")));
    Ok(())
}

#[asyncio::test]
async fn getnameinfo_numeric() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
    let got = loop_
        .getnameinfo(addr, NI_NUMERICHOST | NI_NUMERICSERV)
        .await?;
    assert_eq!(got, ("127.0.0.1".to_owned(), "80".to_owned()));
    let addr: SocketAddr = "[::1]:22".parse().unwrap();
    let got = loop_
        .getnameinfo(addr, NI_NUMERICHOST | NI_NUMERICSERV)
        .await?;
    assert_eq!(got, ("::1".to_owned(), "22".to_owned()));
    Ok(())
}

#[asyncio::test]
async fn getnameinfo_matches_python() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let cases: [(&str, u16, i32); 5] = [
        ("127.0.0.1", 80, 0),
        ("127.0.0.1", 80, NI_NUMERICHOST),
        ("127.0.0.1", 443, NI_NUMERICSERV),
        ("::1", 80, NI_NUMERICHOST | NI_NUMERICSERV),
        ("127.0.0.1", 65000, 0),
    ];
    let mut script = String::from(
        "import socket\n\
         def q(sa, flags):\n\
         \x20   try:\n\
         \x20       print('OK', *socket.getnameinfo(sa, flags), sep='\\t')\n\
         \x20   except OSError as e:\n\
         \x20       print('ERR', e.errno, sep='\\t')\n",
    );
    for (host, port, flags) in cases {
        script.push_str(&format!("q(('{host}', {port}), {flags})\n"));
    }
    let out = python(&script);
    let want: Vec<&str> = out.lines().collect();
    assert_eq!(want.len(), cases.len());
    for ((host, port, flags), want) in cases.iter().zip(want) {
        let addr = SocketAddr::new(host.parse().unwrap(), *port);
        let got = match loop_.getnameinfo(addr, *flags).await {
            Ok((h, s)) => format!("OK\t{h}\t{s}"),
            Err(e) => format!("ERR\t{}", e.raw_os_error().unwrap_or(0)),
        };
        assert_eq!(got, want, "{host} {port} {flags}");
    }
    Ok(())
}

#[asyncio::test]
async fn a_nul_byte_in_a_host_is_a_value_error() -> asyncio::Result<()> {
    // CPython: create_connection(host='local\0host') raises
    // ValueError('embedded null character').
    let loop_ = asyncio::get_running_loop()?;
    let err = loop_.getaddrinfo("local\0host", 80).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "embedded null character");
    let log = net_common::Log::new(&loop_);
    let err = loop_
        .create_connection(move || net_common::Rec::new(&log))
        .host("local\0host")
        .port(80)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "embedded null character");
    Ok(())
}

#[asyncio::test]
async fn getaddrinfo_without_host_and_port_is_gaierror_noname() -> asyncio::Result<()> {
    // CPython: socket.gaierror(-2, 'Name or service not known').
    let loop_ = asyncio::get_running_loop()?;
    let err = loop_
        .getaddrinfo(None::<&str>, None::<&str>)
        .await
        .unwrap_err();
    assert_eq!(err.python_name(), "gaierror");
    assert_eq!(err.raw_os_error(), Some(-2));
    assert_eq!(err.to_string(), "[Errno -2] Name or service not known");
    Ok(())
}
