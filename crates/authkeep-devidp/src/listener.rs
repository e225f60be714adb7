//! The TCP listener the provider serves on. Each accepted connection comes with a
//! [`Cut`] that a request handler can pull to close the connection without sending a
//! response, which is how the "drop connection" and "hang" faults reach the client as
//! connection errors rather than HTTP answers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Severs one connection: once pulled, every read and write on it fails, so the HTTP
/// server drops it before a byte of the response goes out.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cut(Arc<AtomicBool>);

impl Cut {
    pub(crate) fn pull(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_pulled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn check(&self) -> io::Result<()> {
        if self.is_pulled() {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut by the fault plan",
            ))
        } else {
            Ok(())
        }
    }
}

/// What the listener knows of an accepted connection: its [`Cut`].
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    cut: Cut,
}

impl Connected<IncomingStream<'_, CuttableListener>> for Cut {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        stream.remote_addr().cut.clone()
    }
}

/// A TCP listener whose connections can be cut.
pub(crate) struct CuttableListener(TcpListener);

impl CuttableListener {
    pub(crate) fn new(listener: TcpListener) -> Self {
        CuttableListener(listener)
    }
}

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    // Without TCP_NODELAY small answers may wait for the peer's ACK; a
                    // failure to set it costs latency only, so it is not fatal.
                    stream.set_nodelay(true).ok();
                    let cut = Cut::default();
                    let io = CuttableStream {
                        stream,
                        cut: cut.clone(),
                    };
                    return (io, Peer { cut });
                }
                Err(error) if is_per_connection(&error) => {}
                // Out of file descriptors or similar: give the system a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()?;
        Ok(Peer {
            cut: Cut::default(),
        })
    }
}

fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A TCP stream that fails every operation once its [`Cut`] is pulled.
pub(crate) struct CuttableStream {
    stream: TcpStream,
    cut: Cut,
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.cut.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.cut.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.cut.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.cut.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.cut.check()?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}
