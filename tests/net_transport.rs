//! Stream transports over real loopback TCP connections (CPython's
//! `_SelectorSocketTransport`): callback order, half-close, close/abort,
//! flow control, pause/resume reading, protocol switching, fatal errors,
//! extra info and re-entrant calls from callbacks.

mod net_common;

use std::cell::RefCell;
use std::rc::Rc;

use asyncio::{Buffered, Error, ErrorKind, StreamProtocolRef, Transport};
use net_common::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn runtime_error(text: &str) -> Exc {
    Exc {
        kind: ErrorKind::RuntimeError,
        name: "RuntimeError",
        text: text.to_owned(),
        errno: None,
    }
}

// ===== callback order and half-close =====

#[asyncio::test]
async fn connection_made_runs_before_create_connection_returns() -> asyncio::Result<()> {
    let (server, port, accepted) = serve_on_loopback(Rec::echo).await?;
    let (client, log) = connect(port, Rec::new).await?;
    // CPython's waiter is set after connection_made: the protocol is
    // connected by the time create_connection returns.
    assert_eq!(log.summary(), ["made"]);
    assert!(!client.is_closing());
    assert!(client.is_reading());
    let server_log = accepted.next().await?;
    assert_eq!(server_log.summary(), ["made"]);
    client.close();
    log.wait_lost().await?;
    server_log.wait_lost().await?;
    server.close();
    Ok(())
}

#[asyncio::test]
async fn callback_order_made_data_eof_lost() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    p.client.write(b"hello ")?;
    p.client.write(b"world")?;
    p.client.write_eof()?;
    p.server_log.wait_eof().await?;
    let exc = p.server_log.wait_lost().await?;
    assert!(exc.is_none());
    assert_eq!(p.server_log.data(), b"hello world");
    assert_eq!(p.server_log.summary(), ["made", "data", "eof", "lost"]);
    // The server's transport closed on EOF (eof_received returned false):
    // the client sees EOF in turn, then its own connection_lost.
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.client_log.summary(), ["made", "eof", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn eof_received_false_closes_the_transport() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let st = p.server_transport();
    p.client.write_eof()?;
    p.server_log.wait_eof().await?;
    // close() is called from inside the EOF handling.
    assert!(st.is_closing());
    assert!(!st.is_reading());
    assert!(p.server_log.wait_lost().await?.is_none());
    assert_eq!(p.server_log.summary(), ["made", "eof", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn eof_received_true_keeps_the_transport_open_for_writing() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            keep_open: true,
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    let st = p.server_transport();
    p.client.write(b"question")?;
    p.client.write_eof()?;
    p.server_log.wait_eof().await?;
    assert_eq!(p.server_log.data(), b"question");
    // Still open: not closing, and writes reach the peer.
    iterations(3).await?;
    assert!(!st.is_closing());
    assert!(!p.server_log.is_lost());
    st.write(b"answer")?;
    assert_eq!(p.client_log.wait_data(6).await?, b"answer");
    st.close();
    assert!(p.server_log.wait_lost().await?.is_none());
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.server_log.summary(), ["made", "data", "eof", "lost"]);
    assert_eq!(p.client_log.summary(), ["made", "data", "eof", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn write_eof_peer_sees_eof_and_we_can_still_read() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            keep_open: true,
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    assert!(p.client.can_write_eof());
    p.client.write(b"ping")?;
    p.client.write_eof()?;
    // write_eof is idempotent.
    p.client.write_eof()?;
    assert!(!p.client.is_closing());
    p.server_log.wait_eof().await?;
    assert_eq!(p.server_log.data(), b"ping");
    // The client's read side still works.
    p.server_transport().write(b"pong")?;
    assert_eq!(p.client_log.wait_data(4).await?, b"pong");
    assert!(p.client.is_reading());
    p.server_transport().close();
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.client_log.summary(), ["made", "data", "eof", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn write_eof_with_buffered_data_flushes_before_shutdown() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            keep_open: true,
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    set_sndbuf(&p.client, 16 * KIB);
    let data = pattern(4 * MIB);
    p.client.set_write_buffer_limits(Some(8 * MIB), None)?;
    p.client.write(&data)?;
    assert!(
        p.client.get_write_buffer_size() > 0,
        "data must be buffered"
    );
    p.client.write_eof()?;
    assert!(!p.client.is_closing());
    p.server_log.wait_eof().await?;
    assert_eq!(p.server_log.data_len(), data.len());
    assert!(p.server_log.data() == data, "bytes lost or reordered");
    assert_eq!(p.client.get_write_buffer_size(), 0);
    p.server_transport().close();
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn write_after_write_eof_is_a_runtime_error() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    p.client.write_eof()?;
    let err = p.client.write(b"late").unwrap_err();
    assert_eq!(
        Exc::of(&err),
        runtime_error("Cannot call write() after write_eof()")
    );
    // CPython checks write_eof before the empty-data shortcut.
    let err = p.client.write(b"").unwrap_err();
    assert_eq!(err.to_string(), "Cannot call write() after write_eof()");
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn writelines_after_write_eof_is_a_runtime_error() -> asyncio::Result<()> {
    // CPython 3.13 selector_events.py:1168.
    let p = pair(Rec::new, Rec::new).await?;
    p.client.write_eof()?;
    let err = p.client.writelines(&[b"a", b"b"]).unwrap_err();
    assert_eq!(
        Exc::of(&err),
        runtime_error("Cannot call writelines() after write_eof()")
    );
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn empty_write_is_a_no_op() -> asyncio::Result<()> {
    let p = pair(Rec::echo, Rec::new).await?;
    p.client.write(b"")?;
    p.client.writelines(&[])?;
    assert_eq!(p.client.get_write_buffer_size(), 0);
    p.client.write(b"x")?;
    assert_eq!(p.client_log.wait_data(1).await?, b"x");
    assert_eq!(p.server_log.data(), b"x");
    p.client.close();
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn writelines_sends_every_chunk_in_order() -> asyncio::Result<()> {
    let p = pair(Rec::echo, Rec::new).await?;
    p.client.writelines(&[b"ab", b"", b"cd", b"e"])?;
    assert_eq!(p.client_log.wait_data(5).await?, b"abcde");
    p.client.close();
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

// ===== close and abort =====

#[asyncio::test]
async fn close_with_buffered_data_flushes_then_calls_connection_lost() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    set_sndbuf(&p.client, 16 * KIB);
    p.client.set_write_buffer_limits(Some(16 * MIB), None)?;
    let data = pattern(4 * MIB);
    p.client.write(&data)?;
    assert!(
        p.client.get_write_buffer_size() > 0,
        "data must be buffered"
    );
    p.client.close();
    assert!(p.client.is_closing());
    assert!(!p.client.is_reading());
    // close() is idempotent.
    p.client.close();
    // connection_lost waits for the buffer to drain.
    iterations(2).await?;
    assert!(!p.client_log.is_lost() || p.client.get_write_buffer_size() == 0);
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.client.get_write_buffer_size(), 0);
    p.server_log.wait_lost().await?;
    assert_eq!(p.server_log.data_len(), data.len());
    assert!(p.server_log.data() == data, "bytes lost or reordered");
    assert_eq!(p.server_log.summary(), ["made", "data", "eof", "lost"]);
    assert_eq!(p.client_log.summary(), ["made", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn close_with_empty_buffer_calls_connection_lost_next_iteration() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    p.client.close();
    // Scheduled with call_soon, never called synchronously.
    assert!(!p.client_log.is_lost());
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.client_log.summary(), ["made", "lost"]);
    p.server_log.wait_lost().await?;
    assert_eq!(p.server_log.summary(), ["made", "eof", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn close_stops_reading_at_once() -> asyncio::Result<()> {
    for abort in [false, true] {
        let p = pair(Rec::new, Rec::new).await?;
        p.client.pause_reading();
        p.server_transport().write(b"late")?;
        let mut spins = 0;
        while pending_input(&p.client) < 4 {
            asyncio::sleep(0.001).await?;
            spins += 1;
            assert!(spins < 20_000, "data never reached the client socket");
        }
        p.client.resume_reading();
        // Readable data is waiting, but close()/abort() removes the reader now.
        if abort {
            p.client.abort();
        } else {
            p.client.close();
        }
        assert!(p.client_log.wait_lost().await?.is_none());
        assert_eq!(p.client_log.summary(), ["made", "lost"], "abort={abort}");
        p.server_log.wait_lost().await?;
        p.server.close();
    }
    Ok(())
}

#[asyncio::test]
async fn pause_reading_from_connection_made_defers_all_reads() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            on_made: Some(Box::new(|t| {
                t.pause_reading();
                Ok(())
            })),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    let st = p.server_transport();
    assert!(!st.is_reading());
    p.client.write(b"early")?;
    let mut spins = 0;
    while pending_input(&st) < 5 {
        asyncio::sleep(0.001).await?;
        spins += 1;
        assert!(spins < 20_000, "data never reached the server socket");
    }
    iterations(5).await?;
    assert_eq!(p.server_log.summary(), ["made"]);
    st.resume_reading();
    assert_eq!(p.server_log.wait_data(5).await?, b"early");
    p.client.close();
    p.server_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn abort_drops_buffered_data() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    set_sndbuf(&p.client, 16 * KIB);
    p.client.set_write_buffer_limits(Some(16 * MIB), None)?;
    let data = pattern(4 * MIB);
    p.client.write(&data)?;
    let buffered = p.client.get_write_buffer_size();
    assert!(buffered > 0, "data must be buffered");
    p.client.abort();
    assert!(p.client.is_closing());
    assert_eq!(p.client.get_write_buffer_size(), 0);
    assert!(
        !p.client_log.is_lost(),
        "connection_lost is scheduled, not called"
    );
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.client_log.summary(), ["made", "lost"]);
    p.server_log.wait_lost().await?;
    assert!(
        p.server_log.data_len() <= data.len() - buffered,
        "the peer got {} bytes; {} were dropped by abort()",
        p.server_log.data_len(),
        buffered
    );
    let got = p.server_log.data();
    assert!(got[..] == data[..got.len()], "what arrived is a prefix");
    p.server.close();
    Ok(())
}

// ===== flow control =====

#[asyncio::test]
async fn write_buffer_limits_defaults_and_rules() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let t = &p.client;
    // (low, high), as Python returns them.
    assert_eq!(t.get_write_buffer_limits(), (16 * KIB, 64 * KIB));
    let err = t.set_write_buffer_limits(Some(1), Some(2)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueError);
    assert_eq!(err.to_string(), "high (1) must be >= low (2) must be >= 0");
    // A failed call changes nothing.
    assert_eq!(t.get_write_buffer_limits(), (16 * KIB, 64 * KIB));
    t.set_write_buffer_limits(None, Some(100))?;
    assert_eq!(t.get_write_buffer_limits(), (100, 400));
    t.set_write_buffer_limits(Some(1000), None)?;
    assert_eq!(t.get_write_buffer_limits(), (250, 1000));
    t.set_write_buffer_limits(Some(7), Some(7))?;
    assert_eq!(t.get_write_buffer_limits(), (7, 7));
    t.set_write_buffer_limits(Some(0), Some(0))?;
    assert_eq!(t.get_write_buffer_limits(), (0, 0));
    t.set_write_buffer_limits(None, None)?;
    assert_eq!(t.get_write_buffer_limits(), (16 * KIB, 64 * KIB));
    // Nothing buffered: no pause_writing at any limit.
    assert_eq!(p.client_log.summary(), ["made"]);
    p.client.close();
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

/// 8 MiB to a peer that reads slowly: pause_writing above the high-water
/// mark, resume_writing at or below the low one, alternating, and every
/// byte arrives in order. `limits`: `None` for the defaults.
async fn slow_reader_flow_control(limits: Option<(usize, usize)>) -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let reader_loop = loop_.clone();
    let p = pair(
        move |log| {
            let l = reader_loop.clone();
            Rec {
                // A slow reader: one chunk per loop iteration at most, with
                // a pause in between.
                on_data: Some(Box::new(move |t, _| {
                    t.pause_reading();
                    let t = t.clone();
                    l.call_soon(move || t.resume_reading())?;
                    Ok(())
                })),
                ..Rec::new(log)
            }
        },
        Rec::new,
    )
    .await?;
    let (high, low) = match limits {
        Some((high, low)) => {
            p.client.set_write_buffer_limits(Some(high), Some(low))?;
            (high, low)
        }
        None => (64 * KIB, 16 * KIB),
    };
    assert_eq!(p.client.get_write_buffer_limits(), (low, high));
    set_sndbuf(&p.client, 32 * KIB);
    set_rcvbuf(&p.server_transport(), 32 * KIB);
    let data = pattern(8 * MIB);
    for piece in data.chunks(64 * KIB) {
        p.client.write(piece)?;
        if p.client_log.is_paused() {
            p.client_log.wait_resumed().await?;
        }
    }
    p.client.close();
    p.client_log.wait_lost().await?;
    p.server_log.wait_lost().await?;
    assert_eq!(p.server_log.data_len(), data.len());
    assert!(p.server_log.data() == data, "bytes lost or reordered");
    // At most 256 KiB per recv.
    for ev in p.server_log.events() {
        if let Ev::Data(d) = ev {
            assert!(
                !d.is_empty() && d.len() <= 256 * KIB,
                "chunk of {}",
                d.len()
            );
        }
    }
    let flow: Vec<Ev> = p
        .client_log
        .events()
        .into_iter()
        .filter(|e| matches!(e, Ev::PauseWriting { .. } | Ev::ResumeWriting { .. }))
        .collect();
    assert!(!flow.is_empty(), "pause_writing was never called");
    for (i, ev) in flow.iter().enumerate() {
        match ev {
            Ev::PauseWriting { buffered } => {
                assert_eq!(i % 2, 0, "pause_writing twice in a row: {flow:?}");
                assert!(*buffered > high, "paused at {buffered}");
            }
            Ev::ResumeWriting { buffered } => {
                assert_eq!(i % 2, 1, "resume_writing without pause: {flow:?}");
                assert!(*buffered <= low, "resumed at {buffered}");
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(flow.len() % 2, 0, "the last pause was never resumed");
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn writing_8_mib_to_a_slow_reader_pauses_and_resumes_without_loss() -> asyncio::Result<()> {
    slow_reader_flow_control(None).await
}

#[asyncio::test]
async fn writing_8_mib_with_custom_water_marks() -> asyncio::Result<()> {
    slow_reader_flow_control(Some((200 * KIB, 100 * KIB))).await?;
    slow_reader_flow_control(Some((0, 0))).await
}

#[asyncio::test]
async fn set_write_buffer_limits_rechecks_at_once() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let st = p.server_transport();
    st.pause_reading();
    set_sndbuf(&p.client, 16 * KIB);
    p.client.set_write_buffer_limits(Some(16 * MIB), None)?;
    p.client.write(&pattern(2 * MIB))?;
    let buffered = p.client.get_write_buffer_size();
    assert!(buffered > 0, "data must be buffered");
    assert_eq!(p.client_log.summary(), ["made"]);
    // Lowering the mark below the buffer pauses the protocol right away.
    p.client.set_write_buffer_limits(Some(KIB), Some(0))?;
    assert_eq!(p.client_log.summary(), ["made", "pause_writing"]);
    // Setting it again does not pause twice.
    p.client.set_write_buffer_limits(Some(KIB), Some(0))?;
    assert_eq!(p.client_log.summary(), ["made", "pause_writing"]);
    st.resume_reading();
    p.client_log.wait_resumed().await?;
    assert_eq!(
        p.client_log.summary(),
        ["made", "pause_writing", "resume_writing"]
    );
    assert_eq!(
        p.client_log.events()[2],
        Ev::ResumeWriting { buffered: 0 },
        "low=0: resumed once the buffer is empty"
    );
    p.server_log.wait_data(2 * MIB).await?;
    p.client.close();
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

// ===== pause_reading / resume_reading =====

#[asyncio::test]
async fn pause_reading_stops_data_received_and_resume_restarts_it() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let st = p.server_transport();
    assert!(st.is_reading());
    st.pause_reading();
    assert!(!st.is_reading());
    // Pausing twice is a no-op.
    st.pause_reading();
    assert!(!st.is_reading());
    p.client.write(b"held back")?;
    // Wait until the bytes sit in the server socket's kernel queue.
    let mut spins = 0;
    while pending_input(&st) < 9 {
        asyncio::sleep(0.001).await?;
        spins += 1;
        assert!(spins < 20_000, "data never reached the server socket");
    }
    iterations(5).await?;
    assert_eq!(p.server_log.summary(), ["made"], "read while paused");
    st.resume_reading();
    assert!(st.is_reading());
    assert_eq!(p.server_log.wait_data(9).await?, b"held back");
    // Resuming when not paused is a no-op.
    st.resume_reading();
    assert!(st.is_reading());
    p.client.write(b"!")?;
    assert_eq!(p.server_log.wait_data(10).await?, b"held back!");
    p.client.close();
    p.server_log.wait_lost().await?;
    // Once closing, is_reading is false and resume_reading does nothing.
    assert!(!st.is_reading());
    st.resume_reading();
    assert!(!st.is_reading());
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn pause_reading_also_holds_back_eof() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let st = p.server_transport();
    st.pause_reading();
    p.client.write(b"x")?;
    p.client.write_eof()?;
    let mut spins = 0;
    while pending_input(&st) < 1 {
        asyncio::sleep(0.001).await?;
        spins += 1;
        assert!(spins < 20_000, "data never reached the server socket");
    }
    iterations(5).await?;
    assert_eq!(p.server_log.summary(), ["made"]);
    st.resume_reading();
    p.server_log.wait_lost().await?;
    assert_eq!(p.server_log.summary(), ["made", "data", "eof", "lost"]);
    p.server.close();
    Ok(())
}

// ===== set_protocol =====

#[asyncio::test]
async fn set_protocol_mid_stream_switches_without_connection_made() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let second_log = Log::new(&loop_);
    let second = Rc::new(Rec::new(&second_log));
    let s2 = second.clone();
    let l2 = second_log.clone();
    let p = pair(
        move |log| {
            let s2 = s2.clone();
            let l2 = l2.clone();
            Rec {
                on_data: Some(Box::new(move |t, _| {
                    // Switch from inside data_received.
                    *s2.transport.borrow_mut() = Some(t.clone());
                    l2.set_transport(t);
                    t.set_protocol(StreamProtocolRef::new(s2.clone()));
                    Ok(())
                })),
                ..Rec::new(log)
            }
        },
        Rec::new,
    )
    .await?;
    p.client.write(b"first")?;
    p.server_log.wait_data(5).await?;
    let st = p.server_transport();
    let current = st.get_protocol().expect("a protocol");
    assert!(current
        .downcast::<Rec>()
        .is_some_and(|r| Rc::ptr_eq(&r, &second)));
    p.client.write(b"second")?;
    assert_eq!(second_log.wait_data(6).await?, b"second");
    p.client.write_eof()?;
    assert!(second_log.wait_lost().await?.is_none());
    assert_eq!(p.server_log.summary(), ["made", "data"]);
    assert_eq!(p.server_log.data(), b"first");
    assert_eq!(second_log.summary(), ["data", "eof", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn set_protocol_to_a_buffered_protocol_mid_stream() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let buf_log = Log::new(&loop_);
    let buffered = Rc::new(BufRec::new(&buf_log, 7));
    let b2 = buffered.clone();
    let p = pair(
        move |log| {
            let b2 = b2.clone();
            Rec {
                on_data: Some(Box::new(move |t, _| {
                    *b2.transport.borrow_mut() = Some(t.clone());
                    t.set_protocol(StreamProtocolRef::buffered(b2.clone()));
                    Ok(())
                })),
                ..Rec::new(log)
            }
        },
        Rec::new,
    )
    .await?;
    p.client.write(b"plain")?;
    p.server_log.wait_data(5).await?;
    assert!(p
        .server_transport()
        .get_protocol()
        .expect("protocol")
        .is_buffered());
    let payload = pattern(1000);
    p.client.write(&payload)?;
    assert!(buf_log.wait_data(payload.len()).await? == payload);
    p.client.write_eof()?;
    assert!(buf_log.wait_lost().await?.is_none());
    let events = buf_log.events();
    assert_eq!(events.first(), Some(&Ev::GetBuffer), "{events:?}");
    // Every read went through get_buffer/buffer_updated, into 7-byte buffers.
    for ev in &events {
        if let Ev::BufferUpdated(n) = ev {
            assert!((1..=7).contains(n));
        }
        assert!(!matches!(ev, Ev::Data(_) | Ev::Made));
    }
    let s = buf_log.summary();
    assert_eq!(&s[s.len() - 2..], ["eof", "lost"]);
    assert_eq!(p.server_log.summary(), ["made", "data"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn buffered_protocol_from_the_factory_reads_into_its_buffer() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let accepted = Accepted::new(&loop_);
    let acc = accepted.clone();
    let server = loop_
        .create_server(move || Buffered(BufRec::new(&acc.log(), 4096)))
        .host("127.0.0.1")
        .port(0)
        .await?;
    let (client, _log) = connect(server_port(&server), Rec::new).await?;
    let payload = pattern(100_000);
    client.write(&payload)?;
    client.write_eof()?;
    let log = accepted.next().await?;
    assert!(log.wait_lost().await?.is_none());
    assert!(log.data() == payload);
    let s = log.summary();
    assert_eq!(s[0], "made");
    assert_eq!(s[1], "get_buffer");
    assert_eq!(&s[s.len() - 2..], ["eof", "lost"]);
    server.close();
    Ok(())
}

// ===== fatal errors =====

#[asyncio::test]
async fn get_buffer_returning_an_empty_buffer_is_fatal() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let accepted = Accepted::new(&loop_);
    let acc = accepted.clone();
    let server = loop_
        .create_server(move || Buffered(BufRec::new(&acc.log(), 0)))
        .host("127.0.0.1")
        .port(0)
        .await?;
    let (client, client_log) = connect(server_port(&server), Rec::new).await?;
    client.write(b"data")?;
    let log = accepted.next().await?;
    let exc = log.wait_lost().await?.expect("connection_lost(exc)");
    assert_eq!(
        Exc::of(&exc),
        runtime_error("get_buffer() returned an empty buffer")
    );
    assert_eq!(log.summary(), ["made", "get_buffer", "lost(RuntimeError)"]);
    assert_eq!(
        *handled.borrow(),
        [(
            "Fatal error: protocol.get_buffer() call failed.".to_owned(),
            Some(runtime_error("get_buffer() returned an empty buffer"))
        )]
    );
    assert_eq!(handled_keys(), [["protocol", "transport"]]);
    client_log.wait_lost().await?;
    server.close();
    Ok(())
}

#[asyncio::test]
async fn error_from_data_received_is_fatal() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let p = pair(
        |log| Rec {
            on_data: Some(Box::new(|_, _| Err(Error::value("bad data")))),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    p.client.write(b"x")?;
    let exc = p
        .server_log
        .wait_lost()
        .await?
        .expect("connection_lost(exc)");
    assert_eq!(exc.kind(), ErrorKind::ValueError);
    assert_eq!(exc.to_string(), "bad data");
    assert_eq!(p.server_log.summary(), ["made", "data", "lost(ValueError)"]);
    let seen = handled.borrow().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].0,
        "Fatal error: protocol.data_received() call failed."
    );
    let e = seen[0].1.clone().expect("an exception");
    assert_eq!(
        (e.kind, e.text.as_str()),
        (ErrorKind::ValueError, "bad data")
    );
    // The peer sees the connection close.
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn panic_in_data_received_is_fatal() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let p = pair(
        |log| Rec {
            on_data: Some(Box::new(|_, _| panic!("kaboom"))),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    p.client.write(b"x")?;
    let exc = p
        .server_log
        .wait_lost()
        .await?
        .expect("connection_lost(exc)");
    assert_eq!(exc.kind(), ErrorKind::Panic);
    assert_eq!(exc.to_string(), "kaboom");
    let seen = handled.borrow().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].0,
        "Fatal error: protocol.data_received() call failed."
    );
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn error_from_eof_received_is_fatal() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let p = pair(
        |log| Rec {
            on_eof: Some(Box::new(|_| Err(Error::runtime("eof failed")))),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    p.client.write_eof()?;
    let exc = p
        .server_log
        .wait_lost()
        .await?
        .expect("connection_lost(exc)");
    assert_eq!(Exc::of(&exc), runtime_error("eof failed"));
    assert_eq!(
        *handled.borrow(),
        [(
            "Fatal error: protocol.eof_received() call failed.".to_owned(),
            Some(runtime_error("eof failed"))
        )]
    );
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn failing_pause_and_resume_writing_are_reported_and_writing_goes_on() -> asyncio::Result<()>
{
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let p = pair(Rec::new, |log| Rec {
        on_pause: Some(Box::new(|_| Err(Error::runtime("no pause")))),
        on_resume: Some(Box::new(|_| Err(Error::runtime("no resume")))),
        ..Rec::new(log)
    })
    .await?;
    let total = 8 << 20;
    let data = pattern(total);
    // Outside any protocol callback, so pause_writing is called at once.
    p.client.write(&data)?;
    assert!(p.client.get_write_buffer_size() > 65536);
    assert_eq!(p.client_log.summary(), ["made", "pause_writing"]);
    assert_eq!(
        *handled.borrow(),
        [(
            "protocol.pause_writing() failed".to_owned(),
            Some(runtime_error("no pause"))
        )]
    );
    // The peer reads everything; the buffer drains and resume_writing fails too.
    assert_eq!(p.server_log.wait_data(total).await?, data);
    p.client_log.wait_resumed().await?;
    assert_eq!(
        p.client_log.summary(),
        ["made", "pause_writing", "resume_writing"]
    );
    assert_eq!(
        handled.borrow()[1],
        (
            "protocol.resume_writing() failed".to_owned(),
            Some(runtime_error("no resume"))
        )
    );
    assert_eq!(
        handled_keys(),
        [["protocol", "transport"], ["protocol", "transport"]]
    );
    assert!(!p.client.is_closing());
    p.client.close();
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn an_error_from_connection_made_is_reported_and_the_connection_goes_on(
) -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let p = pair(
        |log| Rec {
            on_made: Some(Box::new(|_| Err(Error::runtime("made failed")))),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    p.client.write(b"still here")?;
    assert_eq!(p.server_log.wait_data(10).await?, b"still here");
    let seen = handled.borrow().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    // CPython: the callback handle's own report ("Exception in callback ...").
    assert!(
        seen[0].0.starts_with("Exception in callback "),
        "{}",
        seen[0].0
    );
    assert_eq!(seen[0].1, Some(runtime_error("made failed")));
    p.client.close();
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn peer_reset_gives_connection_lost_with_connection_reset_error() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let handled = record_handler(&loop_);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (client, log) = connect(port, Rec::new).await?;
    // The handshake is done: accept() returns at once.
    let (peer, _) = listener.accept()?;
    socket2::SockRef::from(&peer).set_linger(Some(std::time::Duration::ZERO))?;
    drop(peer); // SO_LINGER 0: RST
    let exc = log.wait_lost().await?.expect("connection_lost(exc)");
    assert_eq!(exc.kind(), ErrorKind::OSError);
    assert_eq!(exc.python_name(), "ConnectionResetError");
    assert_eq!(exc.raw_os_error(), Some(104));
    assert_eq!(exc.to_string(), "[Errno 104] Connection reset by peer");
    assert_eq!(log.summary(), ["made", "lost(ConnectionResetError)"]);
    assert!(client.is_closing());
    // OSErrors are not reported to the exception handler (CPython logs them
    // in debug mode only).
    assert!(handled.borrow().is_empty(), "{:?}", handled.borrow());
    Ok(())
}

// ===== writes after the connection is lost =====

fn warnings(records: &[LogRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.level == tracing::Level::WARN)
        .map(|r| format!("{}: {}", r.target, r.message))
        .collect()
}

#[test]
fn writes_after_connection_lost_are_dropped_and_warn_from_the_fifth() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let (result, records) = capture_logs(|| {
        loop_.run_until_complete(async {
            let p = pair(Rec::new, Rec::new).await?;
            p.client.close();
            p.client_log.wait_lost().await?;
            let mut after: Vec<usize> = Vec::new();
            // Empty writes return early and are not counted.
            for _ in 0..10 {
                p.client.write(b"")?;
            }
            for _ in 0..6 {
                p.client.write(b"dropped")?;
                after.push(p.client.get_write_buffer_size());
            }
            assert_eq!(after, [0; 6], "nothing is buffered");
            p.server_log.wait_lost().await?;
            assert_eq!(p.server_log.data(), b"");
            p.server.close();
            Ok(())
        })
    });
    result.unwrap();
    loop_.close().unwrap();
    // conn_lost is 1 after close(); writes 5 and 6 find it >= 5.
    assert_eq!(
        warnings(&records),
        [
            "asyncio: socket.send() raised exception.",
            "asyncio: socket.send() raised exception."
        ]
    );
}

// ===== extra info =====

#[asyncio::test]
async fn get_extra_info_peername_sockname_socket_and_unknown_keys() -> asyncio::Result<()> {
    let p = pair(Rec::new, Rec::new).await?;
    let st = p.server_transport();
    let port = server_port(&p.server);
    let c_sock = p.client.get_extra_info("sockname").expect("sockname");
    let c_peer = p.client.get_extra_info("peername").expect("peername");
    let s_sock = st.get_extra_info("sockname").expect("sockname");
    let s_peer = st.get_extra_info("peername").expect("peername");
    // `str()` of the value, as Python prints it.
    assert_eq!(c_peer.to_string(), format!("('127.0.0.1', {port})"));
    let c_sock = c_sock.as_address().expect("address").clone();
    let c_peer = c_peer.as_address().expect("address").clone();
    assert_eq!(format!("{c_peer:?}"), format!("('127.0.0.1', {port})"));
    assert_eq!(s_sock.as_address(), Some(&c_peer));
    assert_eq!(s_peer.as_address(), Some(&c_sock));
    assert_eq!(
        c_sock.as_inet().map(|a| a.ip().to_string()).as_deref(),
        Some("127.0.0.1")
    );

    let info = p.client.get_extra_info("socket").expect("socket");
    let sock = info.as_socket().expect("a TransportSocket").clone();
    assert!(sock.fileno() >= 0);
    assert_eq!((sock.family(), sock.type_(), sock.proto()), (2, 1, 6));
    assert_eq!(sock.getsockname(), Some(c_sock.clone()));
    assert_eq!(sock.getpeername(), Some(c_peer.clone()));
    // It is the transport's real descriptor.
    let local = sock.with_fd(|fd| socket2::SockRef::from(&fd).local_addr())??;
    assert_eq!(local.as_socket(), c_sock.as_inet());
    assert_eq!(
        format!("{sock:?}"),
        format!(
            "<asyncio.TransportSocket fd={}, family=2, type=1, proto=6, laddr={c_sock:?}, raddr={c_peer:?}>",
            sock.fileno()
        )
    );

    for key in [
        "nope",
        "sslcontext",
        "peercert",
        "cipher",
        "pipe",
        "subprocess",
        "",
    ] {
        assert!(p.client.get_extra_info(key).is_none(), "{key}");
    }

    p.client.close();
    p.client_log.wait_lost().await?;
    // Once closed, the socket reports fileno -1 and refuses options.
    assert_eq!(sock.fileno(), -1);
    assert!(sock.with_fd(|_| ()).is_err());
    // Addresses stay available.
    assert_eq!(
        p.client
            .get_extra_info("peername")
            .and_then(|i| i.as_address().cloned()),
        Some(c_peer)
    );
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn get_extra_info_socket_after_close_is_a_closed_transport_socket() -> asyncio::Result<()> {
    // CPython keeps the TransportSocket in the extra dict:
    // <asyncio.TransportSocket fd=-1, family=2, type=1, proto=6>
    let p = pair(Rec::new, Rec::new).await?;
    p.client.close();
    p.client_log.wait_lost().await?;
    let info = p.client.get_extra_info("socket").expect("still there");
    let sock = info.as_socket().expect("a TransportSocket").clone();
    assert_eq!(sock.fileno(), -1);
    assert_eq!(
        format!("{sock:?}"),
        "<asyncio.TransportSocket fd=-1, family=2, type=1, proto=6>"
    );
    p.server.close();
    Ok(())
}

// ===== re-entrant calls from callbacks =====

#[asyncio::test]
async fn write_and_close_from_connection_made() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            on_made: Some(Box::new(|t| {
                t.write(b"greeting")?;
                t.close();
                // Writes after close are dropped silently.
                t.write(b"dropped")?;
                Ok(())
            })),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    assert_eq!(p.client_log.wait_data(8).await?, b"greeting");
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.client_log.summary(), ["made", "data", "eof", "lost"]);
    assert_eq!(p.client_log.data(), b"greeting");
    assert!(p.server_log.wait_lost().await?.is_none());
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn abort_from_connection_made() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            on_made: Some(Box::new(|t| {
                t.abort();
                Ok(())
            })),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    assert!(p.server_log.wait_lost().await?.is_none());
    assert_eq!(p.server_log.summary(), ["made", "lost"]);
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn close_and_abort_from_data_received() -> asyncio::Result<()> {
    for abort in [false, true] {
        let p = pair(
            move |log| Rec {
                on_data: Some(Box::new(move |t, _| {
                    t.write(b"bye")?;
                    if abort {
                        t.abort();
                    } else {
                        t.close();
                    }
                    t.close();
                    t.abort();
                    t.pause_reading();
                    t.resume_reading();
                    Ok(())
                })),
                ..Rec::new(log)
            },
            Rec::new,
        )
        .await?;
        p.client.write(b"hi")?;
        assert!(p.server_log.wait_lost().await?.is_none());
        assert_eq!(
            p.server_log.summary(),
            ["made", "data", "lost"],
            "abort={abort}"
        );
        p.client_log.wait_lost().await?;
        p.server.close();
    }
    Ok(())
}

#[asyncio::test]
async fn pause_reading_from_data_received_and_resume_later() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            on_data: Some(Box::new(|t, _| {
                t.pause_reading();
                assert!(!t.is_reading());
                Ok(())
            })),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    let st = p.server_transport();
    p.client.write(b"one")?;
    p.server_log.wait_data(3).await?;
    assert!(!st.is_reading());
    p.client.write(b"two")?;
    let mut spins = 0;
    while pending_input(&st) < 3 {
        asyncio::sleep(0.001).await?;
        spins += 1;
        assert!(spins < 20_000, "data never reached the server socket");
    }
    iterations(5).await?;
    assert_eq!(p.server_log.data(), b"one");
    st.resume_reading();
    assert_eq!(p.server_log.wait_data(6).await?, b"onetwo");
    // Paused again by the second data_received: EOF waits too.
    assert!(!st.is_reading());
    p.client.close();
    p.client_log.wait_lost().await?;
    iterations(5).await?;
    assert!(!p.server_log.is_lost());
    st.resume_reading();
    p.server_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn set_write_buffer_limits_from_data_received_pauses_writing() -> asyncio::Result<()> {
    let set_ok = Rc::new(RefCell::new(None));
    let s = set_ok.clone();
    let p = pair(Rec::new, move |log| Rec {
        on_data: Some(Box::new(move |t, _| {
            // pause_writing is due at once while data_received runs.
            *s.borrow_mut() = Some(t.set_write_buffer_limits(Some(0), None).is_ok());
            Ok(())
        })),
        ..Rec::new(log)
    })
    .await?;
    let st = p.server_transport();
    st.pause_reading();
    set_sndbuf(&p.client, 16 * KIB);
    p.client.set_write_buffer_limits(Some(16 * MIB), None)?;
    p.client.write(&pattern(2 * MIB))?;
    assert!(
        p.client.get_write_buffer_size() > 0,
        "data must be buffered"
    );
    st.write(b"go")?;
    p.client_log.wait_data(2).await?;
    iterations(2).await?;
    assert_eq!(*set_ok.borrow(), Some(true));
    assert_eq!(p.client_log.summary(), ["made", "data", "pause_writing"]);
    st.resume_reading();
    p.client_log.wait_resumed().await?;
    p.server_log.wait_data(2 * MIB).await?;
    assert_eq!(
        p.client_log.summary(),
        ["made", "data", "pause_writing", "resume_writing"]
    );
    p.client.close();
    p.client_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn writes_from_resume_writing_that_pause_again() -> asyncio::Result<()> {
    let total = 4 * MIB;
    let chunk = 256 * KIB;
    let data = Rc::new(pattern(total));
    let sent = Rc::new(RefCell::new(0usize));
    let (d, s) = (data.clone(), sent.clone());
    let p = pair(Rec::new, move |log| Rec {
        on_resume: Some(Box::new(move |t| {
            // Each chunk is above the high-water mark: pause_writing is due
            // while resume_writing is still running.
            let mut sent = s.borrow_mut();
            if *sent < d.len() {
                let end = (*sent + chunk).min(d.len());
                t.write(&d[*sent..end])?;
                *sent = end;
            } else {
                t.close();
            }
            Ok(())
        })),
        ..Rec::new(log)
    })
    .await?;
    set_sndbuf(&p.client, 16 * KIB);
    *sent.borrow_mut() = chunk;
    p.client.write(&data[..chunk])?;
    assert!(p.client_log.is_paused(), "{:?}", p.client_log.summary());
    p.client_log.wait_lost().await?;
    p.server_log.wait_lost().await?;
    assert!(p.server_log.data() == *data, "bytes lost or reordered");
    let flow: Vec<String> = p
        .client_log
        .summary()
        .into_iter()
        .filter(|s| s.ends_with("_writing"))
        .collect();
    assert!(flow.len() >= 2 * (total / chunk) - 1, "{flow:?}");
    for (i, name) in flow.iter().enumerate() {
        let want = if i % 2 == 0 {
            "pause_writing"
        } else {
            "resume_writing"
        };
        assert_eq!(name, want, "{flow:?}");
    }
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn abort_from_pause_writing() -> asyncio::Result<()> {
    let p = pair(Rec::new, |log| Rec {
        on_pause: Some(Box::new(|t| {
            t.abort();
            Ok(())
        })),
        ..Rec::new(log)
    })
    .await?;
    set_sndbuf(&p.client, 16 * KIB);
    p.client.write(&pattern(4 * MIB))?;
    assert!(p.client.is_closing());
    assert_eq!(p.client.get_write_buffer_size(), 0);
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.client_log.summary(), ["made", "pause_writing", "lost"]);
    p.server_log.wait_lost().await?;
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn write_from_eof_received_then_keep_open() -> asyncio::Result<()> {
    let p = pair(
        |log| Rec {
            on_eof: Some(Box::new(|t| {
                t.write(b"last words")?;
                t.close();
                Ok(true)
            })),
            ..Rec::new(log)
        },
        Rec::new,
    )
    .await?;
    p.client.write_eof()?;
    assert_eq!(p.client_log.wait_data(10).await?, b"last words");
    assert!(p.server_log.wait_lost().await?.is_none());
    assert!(p.client_log.wait_lost().await?.is_none());
    assert_eq!(p.server_log.summary(), ["made", "eof", "lost"]);
    p.server.close();
    Ok(())
}

#[asyncio::test]
async fn calls_from_connection_lost_do_not_panic() -> asyncio::Result<()> {
    let p = pair(Rec::new, |log| {
        let mut rec = Rec::new(log);
        let t_slot: Rc<RefCell<Option<Rc<dyn Transport>>>> = Rc::new(RefCell::new(None));
        let t2 = t_slot.clone();
        rec.on_made = Some(Box::new(move |t| {
            *t2.borrow_mut() = Some(t.clone());
            Ok(())
        }));
        rec.on_lost = Some(Box::new(move |_| {
            if let Some(t) = t_slot.borrow_mut().take() {
                assert!(t.write(b"ignored").is_ok());
                t.close();
                t.abort();
                t.pause_reading();
                t.resume_reading();
                assert!(t.set_write_buffer_limits(Some(0), None).is_ok());
                assert!(t.write_eof().is_ok());
                assert!(t.get_protocol().is_none() || t.is_closing());
            }
        }));
        rec
    })
    .await?;
    p.client.close();
    p.client_log.wait_lost().await?;
    p.server_log.wait_lost().await?;
    p.server.close();
    Ok(())
}
