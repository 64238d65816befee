//! Batched UDP IO: `recvmmsg` into one reused buffer and `sendmmsg` with two-part iovecs.
//!
//! Written against libc because tokio exposes one datagram per syscall. Each outgoing datagram is
//! sent as `[header, payload]` iovecs, so a payload shared by many connections (`Bytes`) is never
//! copied into a per-connection buffer.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use bytes::Bytes;
use socket2::SockAddr;
use stadion_srt::Transmit;

/// Datagrams per syscall.
pub const BATCH: usize = 64;
/// Room per received datagram (a 1500-byte MTU datagram, rounded).
const SLOT: usize = 1536;

fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    // SAFETY: `storage` was filled by the kernel for `len` bytes, and sockaddr_storage is large
    // enough for any address family.
    let addr = unsafe { SockAddr::new(std::ptr::read(storage as *const _ as *const _), len) };
    addr.as_socket()
}

/// Reusable memory for [`recv_batch`].
pub struct RecvBuffer {
    buf: Box<[u8]>,
}

impl Default for RecvBuffer {
    fn default() -> Self {
        RecvBuffer {
            buf: vec![0u8; BATCH * SLOT].into_boxed_slice(),
        }
    }
}

/// Receives up to [`BATCH`] datagrams without blocking; `WouldBlock` when none is waiting.
///
/// Each datagram is copied out of the reused buffer into its own `Bytes`: a payload may wait
/// in a receive buffer for the whole TSBPD latency, and slices of one shared batch buffer
/// would pin 96 KiB per packet held.
pub fn recv_batch(
    fd: &impl AsRawFd,
    mem: &mut RecvBuffer,
    out: &mut Vec<(SocketAddr, Bytes)>,
) -> io::Result<usize> {
    // SAFETY: zeroed sockaddr_storage/msghdr/mmsghdr are valid initial values.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, chunk) in mem.buf.chunks_exact_mut(SLOT).enumerate() {
        iovs[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: SLOT,
        };
        msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        msgs[i].msg_hdr.msg_namelen =
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every pointer in `msgs` refers to live arrays above, sized as declared.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (i, msg) in msgs[..n].iter().enumerate() {
        let len = (msg.msg_len as usize).min(SLOT);
        if let Some(addr) = to_socket_addr(&addrs[i], msg.msg_hdr.msg_namelen) {
            let at = i * SLOT;
            out.push((addr, Bytes::copy_from_slice(&mem.buf[at..at + len])));
        }
    }
    Ok(n)
}

/// Sends a prefix of `batch` in one `sendmmsg`; returns how many went out.
pub fn send_batch(fd: &impl AsRawFd, batch: &[Transmit]) -> io::Result<usize> {
    let n = batch.len().min(BATCH);
    let addrs: Vec<SockAddr> = batch[..n]
        .iter()
        .map(|t| SockAddr::from(t.destination))
        .collect();
    // SAFETY: zeroed iovec/mmsghdr are valid initial values.
    let mut iovs: [[libc::iovec; 2]; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, t) in batch[..n].iter().enumerate() {
        iovs[i] = [
            libc::iovec {
                iov_base: t.header.as_ptr() as *mut _,
                iov_len: t.header.len(),
            },
            libc::iovec {
                iov_base: t.payload.as_ptr() as *mut _,
                iov_len: t.payload.len(),
            },
        ];
        msgs[i].msg_hdr.msg_name = addrs[i].as_ptr() as *mut _;
        msgs[i].msg_hdr.msg_namelen = addrs[i].len();
        msgs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 2;
    }
    // SAFETY: the kernel only reads the iovecs (header/payload buffers borrowed from `batch`)
    // and addresses, all alive for the duration of the call.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}
