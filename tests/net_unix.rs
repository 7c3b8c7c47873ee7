//! Unix-socket servers and connections: `create_unix_server`,
//! `create_unix_connection`, stale socket files, cleanup on close, and the
//! argument errors.

mod net_common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use asyncio::{Address, ErrorKind, EventLoop, Server};
use net_common::*;

/// A fresh socket path in the temp directory (removed if left over).
fn sock_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("aio-{}-{tag}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn factory(loop_: &EventLoop) -> impl FnOnce() -> Rec + 'static {
    let l = loop_.clone();
    move || Rec::new(&Log::new(&l))
}

async fn unix_echo_server(path: &Path) -> asyncio::Result<(Server, Accepted)> {
    let loop_ = asyncio::get_running_loop()?;
    let accepted = Accepted::new(&loop_);
    let acc = accepted.clone();
    let server = loop_
        .create_unix_server(move || Rec::echo(&acc.log()))
        .path(path)
        .await?;
    Ok((server, accepted))
}

async fn unix_echo_once(path: &Path, msg: &[u8]) -> asyncio::Result<Vec<u8>> {
    let loop_ = asyncio::get_running_loop()?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_unix_connection(move || Rec::new(&l))
        .path(path)
        .await?;
    t.write(msg)?;
    let got = log.wait_data(msg.len()).await?;
    t.close();
    log.wait_lost().await?;
    Ok(got)
}

#[asyncio::test]
async fn unix_server_and_connection_echo() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let path = sock_path("echo");
    let (server, accepted) = unix_echo_server(&path).await?;
    assert!(server.is_serving());
    let socks = server.sockets();
    assert_eq!(socks.len(), 1);
    assert_eq!((socks[0].family(), socks[0].type_()), (1, 1));
    assert_eq!(socks[0].getsockname(), Some(Address::Unix(path.clone())));
    assert!(path.exists());

    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_unix_connection(move || Rec::new(&l))
        .path(path.clone())
        .await?;
    assert_eq!(log.summary(), ["made"]);
    let peer = t
        .get_extra_info("peername")
        .and_then(|i| i.as_address().cloned());
    assert_eq!(peer, Some(Address::Unix(path.clone())));
    // The client's socket is unnamed: Python shows ''.
    let own = t
        .get_extra_info("sockname")
        .and_then(|i| i.as_address().cloned())
        .expect("sockname");
    assert_eq!(format!("{own:?}"), "''");
    let server_log = accepted.next().await?;
    let server_side = server_log
        .transport()
        .and_then(|t| t.get_extra_info("sockname"))
        .and_then(|i| i.as_address().cloned());
    assert_eq!(server_side, Some(Address::Unix(path.clone())));

    t.write(b"over unix")?;
    assert_eq!(log.wait_data(9).await?, b"over unix");
    t.write_eof()?;
    assert!(log.wait_lost().await?.is_none());
    assert_eq!(log.summary(), ["made", "data", "eof", "lost"]);
    assert_eq!(server_log.summary(), ["made", "data", "eof", "lost"]);
    server.close();
    server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn unix_transport_socket_repr_matches_python() -> asyncio::Result<()> {
    let path = sock_path("repr");
    let (server, _) = unix_echo_server(&path).await?;
    let s = server.sockets()[0].clone();
    assert_eq!(
        format!("{s:?}"),
        format!(
            "<asyncio.TransportSocket fd={}, family=1, type=1, proto=0, laddr={}>",
            s.fileno(),
            path.display()
        )
    );
    server.close();
    Ok(())
}

#[asyncio::test]
async fn a_stale_socket_file_is_replaced() -> asyncio::Result<()> {
    let path = sock_path("stale");
    drop(std::os::unix::net::UnixListener::bind(&path)?);
    assert!(path.exists(), "the stale socket file is left behind");
    let (server, _) = unix_echo_server(&path).await?;
    assert_eq!(unix_echo_once(&path, b"fresh").await?, b"fresh");
    server.close();
    server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn the_socket_file_is_removed_on_close() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let path = sock_path("cleanup");
    let (server, _) = unix_echo_server(&path).await?;
    assert!(path.exists());
    server.close();
    assert!(!path.exists(), "close() removes the socket file");
    server.wait_closed().await?;

    // cleanup_socket=False keeps it.
    let server = loop_
        .create_unix_server(move || Rec::new(&Log::new(&asyncio::get_running_loop().unwrap())))
        .path(path.clone())
        .cleanup_socket(false)
        .await?;
    server.close();
    assert!(path.exists());
    std::fs::remove_file(&path)?;

    // A file that replaced ours is not removed.
    let (server, _) = unix_echo_server(&path).await?;
    std::fs::remove_file(&path)?;
    std::fs::write(&path, b"someone else's")?;
    server.close();
    assert!(path.exists());
    std::fs::remove_file(&path)?;
    Ok(())
}

#[asyncio::test]
async fn start_serving_false_removes_the_file_on_close_too() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let path = sock_path("nostart");
    let server = loop_
        .create_unix_server(move || Rec::new(&Log::new(&asyncio::get_running_loop().unwrap())))
        .path(path.clone())
        .start_serving(false)
        .await?;
    assert!(!server.is_serving());
    assert!(path.exists());
    server.start_serving().await?;
    assert_eq!(unix_echo_once(&path, b"").await?, b"");
    server.close();
    assert!(!path.exists());
    Ok(())
}

#[asyncio::test]
async fn a_regular_file_at_the_path_is_address_in_use() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let path = sock_path("regular");
    std::fs::write(&path, b"not a socket")?;
    let err = loop_
        .create_unix_server(move || Rec::new(&Log::new(&asyncio::get_running_loop().unwrap())))
        .path(path.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OSError);
    assert_eq!(err.raw_os_error(), Some(98));
    assert_eq!(
        err.to_string(),
        format!("[Errno 98] Address '{}' is already in use", path.display())
    );
    assert!(path.exists(), "a regular file is never removed");
    std::fs::remove_file(&path)?;
    Ok(())
}

/// A path that cannot even be checked (a regular file stands where a
/// directory should): logged as CPython does, and bind() fails with it.
#[test]
fn a_stale_path_that_cannot_be_checked_is_logged() {
    let file = sock_path("notadir");
    std::fs::write(&file, b"a file, not a directory").unwrap();
    let path = file.join("sock");
    let p = path.clone();
    let (outcome, logs) = capture_logs(|| {
        asyncio::run(async move {
            let loop_ = asyncio::get_running_loop()?;
            loop_.create_unix_server(factory_fn).path(p).await.map(drop)
        })
    });
    let err = outcome.unwrap_err();
    assert_eq!(err.python_name(), "NotADirectoryError");
    assert_eq!(err.raw_os_error(), Some(20));
    let errors: Vec<&str> = logs
        .iter()
        .filter(|r| r.level == tracing::Level::ERROR)
        .map(|r| r.message.as_str())
        .collect();
    assert_eq!(
        errors,
        [format!(
            "Unable to check or remove stale UNIX socket '{}': NotADirectoryError(20, 'Not a directory')",
            path.display()
        )]
    );
    std::fs::remove_file(&file).unwrap();
}

/// The socket file cannot be looked at any more when the server closes:
/// logged as CPython does, and the server still closes.
#[test]
fn a_socket_file_that_cannot_be_cleaned_up_is_logged() {
    let dir = sock_path("dir");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("sock");
    let moved = sock_path("moved");
    let (p, d, m) = (path.clone(), dir.clone(), moved.clone());
    let (outcome, logs) = capture_logs(|| {
        asyncio::run(async move {
            let loop_ = asyncio::get_running_loop()?;
            let server = loop_.create_unix_server(factory_fn).path(&p).await?;
            // The directory goes; a regular file takes its name.
            std::fs::rename(&d, &m)?;
            std::fs::write(&d, b"not a directory")?;
            server.close();
            server.wait_closed().await
        })
    });
    outcome.unwrap();
    let errors: Vec<&str> = logs
        .iter()
        .filter(|r| r.level == tracing::Level::ERROR)
        .map(|r| r.message.as_str())
        .collect();
    assert_eq!(
        errors,
        [format!(
            "Unable to clean up listening UNIX socket '{}': NotADirectoryError(20, 'Not a directory')",
            path.display()
        )]
    );
    std::fs::remove_file(&dir).unwrap();
    std::fs::remove_dir_all(&moved).unwrap();
}

fn factory_fn() -> Rec {
    Rec::new(&Log::new(
        &asyncio::get_running_loop().expect("a running loop"),
    ))
}

#[asyncio::test]
async fn connecting_to_a_missing_path_is_file_not_found() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let path = sock_path("missing");
    let err = loop_
        .create_unix_connection(factory(&loop_))
        .path(path)
        .await
        .failure();
    assert_eq!(err.python_name(), "FileNotFoundError");
    assert_eq!(err.to_string(), "[Errno 2] No such file or directory");
    Ok(())
}

#[asyncio::test]
async fn existing_unix_sockets_as_sock() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let path = sock_path("sock");
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    let accepted = Accepted::new(&loop_);
    let acc = accepted.clone();
    let server = loop_
        .create_unix_server(move || Rec::echo(&acc.log()))
        .sock(listener)
        .await?;
    let stream = std::os::unix::net::UnixStream::connect(&path)?;
    let log = Log::new(&loop_);
    let l = log.clone();
    let (t, _) = loop_
        .create_unix_connection(move || Rec::new(&l))
        .sock(stream)
        .await?;
    t.write(b"via sock")?;
    assert_eq!(log.wait_data(8).await?, b"via sock");
    t.close();
    accepted.next().await?.wait_lost().await?;
    server.close();
    server.wait_closed().await?;
    // CPython 3.13 cleans up the path of a sock= server too.
    assert!(!path.exists());
    Ok(())
}

#[asyncio::test]
async fn abstract_namespace_socket() -> asyncio::Result<()> {
    let name = format!("\0aio-abstract-{}", std::process::id());
    let path = PathBuf::from(name.clone());
    let (server, _) = unix_echo_server(&path).await?;
    assert_eq!(
        server.sockets()[0].getsockname(),
        Some(Address::UnixAbstract(name.as_bytes()[1..].to_vec()))
    );
    assert_eq!(unix_echo_once(&path, b"abstract").await?, b"abstract");
    server.close();
    server.wait_closed().await?;
    Ok(())
}

#[asyncio::test]
async fn argument_errors() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let make = {
        let l = loop_.clone();
        move || Rec::new(&Log::new(&l))
    };
    let path = sock_path("args");

    let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    let err = loop_
        .create_unix_connection(make.clone())
        .path(path.clone())
        .sock(a)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.to_string(),
        "path and sock can not be specified at the same time"
    );

    let err = loop_.create_unix_connection(make.clone()).await.failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.to_string(), "no path and sock were specified");

    let tcp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let fd = tcp.as_raw_fd();
    let err = loop_
        .create_unix_connection(make.clone())
        .sock(tcp)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert!(
        err.to_string().starts_with(&format!(
            "A UNIX Domain Stream Socket was expected, got <socket.socket fd={fd}, family=2, type=1, "
        )),
        "{err}"
    );

    let err = loop_
        .create_unix_connection(make.clone())
        .path(path.clone())
        .server_hostname("x")
        .await
        .failure();
    assert_eq!(
        err.to_string(),
        "server_hostname is only meaningful with ssl"
    );

    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    let err = loop_
        .create_unix_server(make.clone())
        .path(sock_path("args2"))
        .sock(listener)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.to_string(),
        "path and sock can not be specified at the same time"
    );
    std::fs::remove_file(&path)?;

    let err = loop_.create_unix_server(make.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(
        err.to_string(),
        "path was not specified, and no sock specified"
    );

    let tcp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let err = loop_.create_unix_server(make).sock(tcp).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("A UNIX Domain Stream Socket was expected, got <socket.socket fd="),
        "{err}"
    );
    Ok(())
}

#[asyncio::test]
async fn a_nul_byte_in_a_socket_path_is_a_value_error() -> asyncio::Result<()> {
    // CPython: ValueError for a path with an embedded NUL (its C calls
    // would use the part before it: 3.13.0 binds the truncated path).
    use std::os::unix::ffi::OsStrExt;
    let loop_ = asyncio::get_running_loop()?;
    let base = sock_path("nul");
    let mut bytes = base.as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(b"\0junk");
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
    let err = loop_
        .create_unix_server(factory_fn)
        .path(path.clone())
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "embedded null byte");
    assert!(!base.exists(), "nothing was bound at the truncated path");
    let err = loop_
        .create_unix_connection(factory_fn)
        .path(path)
        .await
        .failure();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.message(), "embedded null byte");
    Ok(())
}
