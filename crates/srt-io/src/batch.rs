//! Batched UDP IO: `recvmmsg` into one reused buffer and `sendmmsg` with two-part iovecs.
//!
//! Written against libc because tokio exposes one datagram per syscall. Each outgoing datagram is
//! sent as `[header, payload]` iovecs, so a payload shared by many connections (`Bytes`) is never
//! copied into a per-connection buffer; runs to one destination use UDP GSO where the kernel
//! has it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

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

/// One received datagram.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from: SocketAddr,
    pub data: Bytes,
    /// When the kernel received it (with [`enable_timestamps`] on the socket), else when the
    /// batch was read. Taking work in batches per tick delays reading, not this.
    pub arrived: Instant,
}

/// Asks the kernel to stamp each received datagram with its arrival time (`SO_TIMESTAMPNS`),
/// which [`recv_batch`] reports as [`Datagram::arrived`].
pub fn enable_timestamps(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid option value of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's wall-clock arrival stamp in `hdr`'s control messages, if any.
fn arrival_stamp(hdr: &libc::msghdr) -> Option<libc::timespec> {
    // SAFETY: the kernel filled `msg_control` for `msg_controllen` bytes; the CMSG macros
    // walk within that and each SCM_TIMESTAMPNS carries one timespec.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                return Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c).cast::<libc::timespec>(),
                ));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

fn wall_clock() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: CLOCK_REALTIME always exists; `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    timespec_duration(ts)
}

fn timespec_duration(ts: libc::timespec) -> Duration {
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
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
    out: &mut Vec<Datagram>,
) -> io::Result<usize> {
    // SAFETY: zeroed sockaddr_storage/msghdr/mmsghdr are valid initial values.
    let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    // Aligned room for one timestamp control message per datagram.
    let mut cmsgs = [[0u64; 8]; BATCH];
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
        msgs[i].msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
        msgs[i].msg_hdr.msg_controllen = std::mem::size_of_val(&cmsgs[i]);
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
    let (now, wall) = (Instant::now(), wall_clock());
    for (i, msg) in msgs[..n].iter().enumerate() {
        let len = (msg.msg_len as usize).min(SLOT);
        if let Some(from) = to_socket_addr(&addrs[i], msg.msg_hdr.msg_namelen) {
            let at = i * SLOT;
            // How long ago it arrived, by the wall clock (a step of that clock between the
            // two readings is clamped to the read time).
            let age = arrival_stamp(&msg.msg_hdr)
                .map(|ts| wall.saturating_sub(timespec_duration(ts)))
                .filter(|age| *age < Duration::from_secs(1))
                .unwrap_or_default();
            out.push(Datagram {
                from,
                data: Bytes::copy_from_slice(&mem.buf[at..at + len]),
                arrived: now.checked_sub(age).unwrap_or(now),
            });
        }
    }
    Ok(n)
}

/// Largest UDP payload one GSO send may carry.
const GSO_MAX_BYTES: usize = 65_000;
/// Most segments per GSO send (the kernel's UDP_MAX_SEGMENTS).
const GSO_MAX_SEGMENTS: usize = 64;

/// A datagram to send: two parts sent back to back (an SRT header and a shared payload, or
/// nothing and a plain UDP payload), so neither is copied into a send buffer.
pub trait Outgoing {
    fn destination(&self) -> SocketAddr;
    fn parts(&self) -> [&[u8]; 2];
    /// Bytes on the wire (UDP payload).
    fn datagram_len(&self) -> usize {
        let [a, b] = self.parts();
        a.len() + b.len()
    }
}

impl Outgoing for Transmit {
    fn destination(&self) -> SocketAddr {
        self.destination
    }
    fn parts(&self) -> [&[u8]; 2] {
        [&self.header, &self.payload]
    }
}

/// A plain UDP datagram (e.g. a relay's output).
impl Outgoing for (SocketAddr, Bytes) {
    fn destination(&self) -> SocketAddr {
        self.0
    }
    fn parts(&self) -> [&[u8]; 2] {
        [&[], &self.1]
    }
}

/// Sends a prefix of `batch` in one `sendmmsg`; returns how many datagrams went out.
///
/// With `gso` on, runs of datagrams of equal length to one destination (a feed's packets to
/// one receiver) leave as one message with a `UDP_SEGMENT` control message, so the kernel
/// walks its UDP stack once per run instead of once per datagram. If the kernel refuses GSO,
/// `gso` is switched off and the batch goes out without it.
pub fn send_batch<T: Outgoing>(
    fd: &impl AsRawFd,
    batch: &[T],
    gso: &mut bool,
) -> io::Result<usize> {
    let n = batch.len().min(BATCH);
    // Group boundaries: (first, count) of each message.
    let mut groups: Vec<(usize, usize)> = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let len = batch[i].datagram_len();
        let mut count = 1;
        while *gso
            && i + count < n
            && count < GSO_MAX_SEGMENTS
            && (count + 1) * len <= GSO_MAX_BYTES
            && batch[i + count].destination() == batch[i].destination()
            && batch[i + count].datagram_len() == len
        {
            count += 1;
        }
        groups.push((i, count));
        i += count;
    }
    let addrs: Vec<SockAddr> = groups
        .iter()
        .map(|&(first, _)| SockAddr::from(batch[first].destination()))
        .collect();
    // SAFETY: zeroed iovec/mmsghdr are valid initial values.
    let mut iovs: [libc::iovec; 2 * BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    // One aligned control buffer per message, room for a u16 UDP_SEGMENT.
    let mut cmsgs = [[0u64; 4]; BATCH];
    for (t, iov) in batch[..n].iter().zip(iovs.chunks_exact_mut(2)) {
        for (part, v) in t.parts().into_iter().zip(iov) {
            *v = libc::iovec {
                iov_base: part.as_ptr() as *mut _,
                iov_len: part.len(),
            };
        }
    }
    for (m, &(first, count)) in groups.iter().enumerate() {
        let hdr = &mut msgs[m].msg_hdr;
        hdr.msg_name = addrs[m].as_ptr() as *mut _;
        hdr.msg_namelen = addrs[m].len();
        hdr.msg_iov = iovs[2 * first..].as_mut_ptr();
        hdr.msg_iovlen = 2 * count;
        if count > 1 {
            let segment = batch[first].datagram_len() as u16;
            hdr.msg_control = cmsgs[m].as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 32-byte buffer; the macros only
            // compute offsets into it.
            unsafe {
                hdr.msg_controllen = libc::CMSG_SPACE(2) as usize;
                let c = libc::CMSG_FIRSTHDR(hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
            }
        }
    }
    // SAFETY: the kernel only reads the iovecs (header/payload buffers borrowed from `batch`),
    // addresses and control buffers, all alive for the duration of the call.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            groups.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        let err = io::Error::last_os_error();
        let grouped = groups.iter().any(|&(_, c)| c > 1);
        if grouped
            && matches!(
                err.raw_os_error(),
                Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT)
            )
        {
            *gso = false;
            return send_batch(fd, batch, gso);
        }
        return Err(err);
    }
    Ok(groups[..sent as usize].iter().map(|&(_, c)| c).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_is_when_the_kernel_received_not_when_read() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_timestamps(&rx).unwrap();
        // The kernel turns receive stamping on shortly after the first socket asks for it;
        // until then it stamps datagrams when they are read.
        std::thread::sleep(Duration::from_millis(20));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = Instant::now();
        tx.send_to(b"first", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let mut out = Vec::new();
        let n = recv_batch(&rx, &mut RecvBuffer::default(), &mut out).unwrap();
        assert_eq!(n, 1);
        assert_eq!(&out[0].data[..], b"first");
        assert_eq!(out[0].from, tx.local_addr().unwrap());
        let after = out[0].arrived.saturating_duration_since(sent);
        assert!(
            after < Duration::from_millis(50),
            "arrived {after:?} after the send: the read time, not the arrival"
        );
    }
}
