//! Batched UDP IO: `recvmmsg` into one reused buffer and `sendmmsg` with two-part iovecs.
//!
//! Written against libc because tokio exposes one datagram per syscall. Each outgoing datagram is
//! sent as `[header, payload]` iovecs, so a payload shared by many connections (`Bytes`) is never
//! copied into a per-connection buffer; runs to one destination use UDP GSO where the kernel
//! has it, and a socket with [`enable_gro`] takes a peer's runs whole.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::SockAddr;
use stadion_srt::Transmit;

/// Datagrams per syscall.
pub const BATCH: usize = 64;
/// Room per received message: the largest UDP datagram, which is also the most that the
/// kernel coalesces into one message on a socket with [`enable_gro`]. The scratch is never
/// written by us, so only the pages the kernel fills become resident (a slot holding a
/// 1316-byte datagram costs one page).
const SLOT: usize = 1 << 16;

/// # Safety
/// `storage` holds an address the kernel wrote, `len` bytes of it.
unsafe fn to_socket_addr(
    storage: *const libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len.min(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
    let mut copy = socket2::SockAddrStorage::zeroed();
    // SAFETY: the caller vouches for the first `len` bytes of `storage`, which are all that
    // is copied, into storage of the same size.
    let addr = unsafe {
        std::ptr::copy_nonoverlapping(
            storage.cast::<u8>(),
            copy.view_as::<libc::sockaddr_storage>() as *mut libc::sockaddr_storage as *mut u8,
            len as usize,
        );
        SockAddr::new(copy, len)
    };
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
    switch_on(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS)
}

/// Lets the kernel hand over a run of equal-sized datagrams from one sender (a peer's GSO
/// send, or what the NIC's GRO coalesced) as one message (`UDP_GRO`), which [`recv_batch`]
/// splits again: on loopback the sender's kernel no longer cuts its GSO send into datagrams
/// and the receiver takes a run in one step, together about 9 µs less per 8-datagram run
/// here.
pub fn enable_gro(fd: &impl AsRawFd) -> io::Result<()> {
    switch_on(fd, libc::SOL_UDP, libc::UDP_GRO)
}

/// Sets the boolean socket option `name` at `level` to on.
fn switch_on(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid option value of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What the control messages of a received message say.
#[derive(Default)]
struct Control {
    /// The kernel's wall-clock arrival stamp.
    arrived: Option<libc::timespec>,
    /// The message is a run of datagrams of this size (the last may be shorter).
    segment: Option<usize>,
}

fn control(hdr: &libc::msghdr) -> Control {
    let mut found = Control::default();
    // SAFETY: the kernel filled `msg_control` for `msg_controllen` bytes; the CMSG macros
    // walk within that, each SCM_TIMESTAMPNS carries one timespec and each UDP_GRO one int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    found.arrived = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(c).cast::<libc::timespec>(),
                    ));
                }
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    found.segment = usize::try_from(size).ok().filter(|&s| s > 0);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    found
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

/// Bytes of received datagrams packed into one allocation (see [`RecvBuffer`]).
const ARENA: usize = 16 * 1024;

/// Reusable memory for [`recv_batch`]: the kernel writes a batch into `scratch`, and each
/// datagram is then copied, packed, into the current arena and handed out as a `Bytes` slice
/// of it.
///
/// A payload may wait in a receive buffer for the whole TSBPD latency, so it must not keep
/// the scratch alive. A datagram of its own allocation each (as before) cost a `malloc`
/// beyond glibc's per-thread cache (over 1 KiB) and a second one the first time the `Bytes`
/// was shared (a retransmission buffer, a payload sliced out of its SRT header), about a
/// tenth of a 20 Mb/s receiver's CPU. Packed, a held datagram keeps at most one 16 KiB arena
/// alive, which in a stream is shared with the datagrams around it that are held about as
/// long; every datagram but the arena's first costs no allocation.
pub struct RecvBuffer {
    /// Written only by the kernel, read only where it wrote.
    scratch: Box<[MaybeUninit<u8>]>,
    arena: BytesMut,
}

impl Default for RecvBuffer {
    fn default() -> Self {
        RecvBuffer {
            scratch: Box::new_uninit_slice(BATCH * SLOT),
            arena: BytesMut::new(),
        }
    }
}

/// `data` as a `Bytes` in `arena`, which is replaced by a new one when full.
fn keep(arena: &mut BytesMut, data: &[u8]) -> Bytes {
    if arena.capacity() - arena.len() < data.len() {
        *arena = BytesMut::with_capacity(ARENA.max(data.len()));
    }
    arena.extend_from_slice(data);
    arena.split().freeze()
}

/// Receives up to [`BATCH`] messages without blocking and appends their datagrams to `out`
/// (a run coalesced by [`enable_gro`] is one message of many datagrams); returns how many
/// messages, `WouldBlock` when none is waiting.
pub fn recv_batch(
    fd: &impl AsRawFd,
    mem: &mut RecvBuffer,
    out: &mut Vec<Datagram>,
) -> io::Result<usize> {
    // Only the headers are written here; the kernel fills addresses and control messages
    // (read back only as far as it wrote them), so nothing else is cleared per call.
    let mut addrs = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; BATCH];
    // Aligned room for one timestamp control message per datagram.
    let mut cmsgs = [const { MaybeUninit::<[u64; 8]>::uninit() }; BATCH];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; BATCH];
    let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; BATCH];
    for (i, slot) in mem.scratch.chunks_exact_mut(SLOT).enumerate() {
        let iov = iovs[i].write(libc::iovec {
            iov_base: slot.as_mut_ptr().cast(),
            iov_len: SLOT,
        });
        // SAFETY: a zeroed msghdr is a valid value; the pointers set below refer to the
        // arrays above, which outlive the call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addrs[i].as_mut_ptr().cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of::<[u64; 8]>();
        msgs[i].write(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    // SAFETY: every entry of `msgs` was written above and points into live arrays of the
    // sizes it declares.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
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
    for i in 0..n {
        // SAFETY: initialised above; the kernel updated the first `n` in place.
        let msg = unsafe { msgs[i].assume_init_ref() };
        let len = (msg.msg_len as usize).min(SLOT);
        // SAFETY: the kernel wrote `msg_namelen` bytes of the address.
        let from = unsafe { to_socket_addr(addrs[i].as_ptr(), msg.msg_hdr.msg_namelen) };
        let Some(from) = from else { continue };
        let control = control(&msg.msg_hdr);
        // How long ago it arrived, by the wall clock (a step of that clock between the two
        // readings is clamped to the read time).
        let age = control
            .arrived
            .map(|ts| wall.saturating_sub(timespec_duration(ts)))
            .filter(|age| *age < Duration::from_secs(1))
            .unwrap_or_default();
        let arrived = now.checked_sub(age).unwrap_or(now);
        // SAFETY: the kernel wrote the message's `len` bytes at the start of its slot.
        let message: &[u8] = unsafe {
            std::slice::from_raw_parts(mem.scratch[i * SLOT..].as_ptr().cast::<u8>(), len)
        };
        // A coalesced run is split back into its datagrams; anything else is one datagram
        // (an empty one included).
        let segment = control.segment.unwrap_or(len).max(1);
        let mut rest = message;
        loop {
            let (datagram, tail) = rest.split_at(segment.min(rest.len()));
            out.push(Datagram {
                from,
                data: keep(&mut mem.arena, datagram),
                arrived,
            });
            rest = tail;
            if rest.is_empty() {
                break;
            }
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
    // Only the entries this call uses are written (the arrays are 8 KiB; clearing them all
    // per call showed in profiles).
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; 2 * BATCH];
    let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; BATCH];
    // One aligned control buffer per message, room for a u16 UDP_SEGMENT.
    let mut cmsgs = [const { MaybeUninit::<[u64; 4]>::uninit() }; BATCH];
    for (t, iov) in batch[..n].iter().zip(iovs.chunks_exact_mut(2)) {
        for (part, v) in t.parts().into_iter().zip(iov) {
            v.write(libc::iovec {
                iov_base: part.as_ptr() as *mut _,
                iov_len: part.len(),
            });
        }
    }
    for (m, &(first, count)) in groups.iter().enumerate() {
        // SAFETY: a zeroed msghdr is a valid value.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addrs[m].as_ptr() as *mut _;
        hdr.msg_namelen = addrs[m].len();
        hdr.msg_iov = iovs[2 * first..].as_mut_ptr().cast::<libc::iovec>();
        hdr.msg_iovlen = 2 * count;
        if count > 1 {
            let segment = batch[first].datagram_len() as u16;
            hdr.msg_control = cmsgs[m].as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 32-byte buffer; the macros only
            // compute offsets into it.
            unsafe {
                hdr.msg_controllen = libc::CMSG_SPACE(2) as usize;
                let c = libc::CMSG_FIRSTHDR(&hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
            }
        }
        msgs[m].write(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    // SAFETY: the first `groups.len()` messages and the iovecs they name were written above;
    // the kernel only reads them, the header/payload buffers borrowed from `batch`, the
    // addresses and control buffers, all alive for the duration of the call.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
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

    /// A GSO run to a socket with GRO arrives as one message and comes out as the datagrams
    /// that were sent, in order, each with its own content.
    #[test]
    fn a_coalesced_run_is_split_into_its_datagrams() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_gro(&rx).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let sent: Vec<(SocketAddr, Bytes)> = (0..5u8)
            .map(|i| (to, Bytes::from(vec![i; 1000])))
            .chain([(to, Bytes::from_static(&[9; 300]))])
            .collect();
        let mut gso = true;
        assert_eq!(send_batch(&tx, &sent, &mut gso).unwrap(), sent.len());
        assert!(gso, "the kernel refused GSO");
        std::thread::sleep(Duration::from_millis(20));
        let mut out = Vec::new();
        let messages = recv_batch(&rx, &mut RecvBuffer::default(), &mut out).unwrap();
        assert!(
            messages < sent.len(),
            "{messages} messages: nothing coalesced"
        );
        let got: Vec<&[u8]> = out.iter().map(|d| &d.data[..]).collect();
        let want: Vec<&[u8]> = sent.iter().map(|(_, p)| &p[..]).collect();
        assert_eq!(got, want);
        assert!(out.iter().all(|d| d.from == tx.local_addr().unwrap()));
    }

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
