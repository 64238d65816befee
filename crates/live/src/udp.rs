//! Plain UDP sockets for MPEG-TS over UDP/RTP sources and UDP push outputs.
//!
//! The sockets are set up with `socket2` because tokio alone cannot size the kernel receive
//! buffer before binding, and a venue feed at 20-80 Mb/s overflows the default one in bursts.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Kernel receive buffer asked for on source sockets (the kernel may cap it at `rmem_max`).
const SOURCE_RECV_BUFFER: usize = 8 * 1024 * 1024;

/// Binds a socket that receives a UDP/RTP feed sent to `addr`. A multicast `addr` is joined on
/// `interface` (the unspecified address lets the kernel choose) and bound to the group's port,
/// with `SO_REUSEADDR` so that a second flow may listen to the same group.
pub fn bind_source(addr: SocketAddr, interface: Option<Ipv4Addr>) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(addr.ip().is_multicast())?;
    // Best effort: an unprivileged process may get less than it asked for, which only matters
    // under bursts, so it is not worth refusing to start over.
    let _ = socket.set_recv_buffer_size(SOURCE_RECV_BUFFER);
    match addr.ip() {
        IpAddr::V4(group) if group.is_multicast() => {
            socket.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port()).into())?;
            socket.join_multicast_v4(&group, &interface.unwrap_or(Ipv4Addr::UNSPECIFIED))?;
        }
        IpAddr::V6(group) if group.is_multicast() => {
            socket.bind(
                &SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), addr.port()).into(),
            )?;
            socket.join_multicast_v6(&group, 0)?;
        }
        _ => socket.bind(&addr.into())?,
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(StdUdpSocket::from(socket))
}

/// A socket for sending a flow to `destination`; multicast destinations get `ttl` hops.
pub fn bind_push(destination: SocketAddr, ttl: u32) -> io::Result<UdpSocket> {
    let local: SocketAddr = match destination {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = Socket::new(
        Domain::for_address(destination),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if let IpAddr::V4(group) = destination.ip()
        && group.is_multicast()
    {
        socket.set_multicast_ttl_v4(ttl)?;
    }
    socket.bind(&local.into())?;
    socket.connect(&destination.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(StdUdpSocket::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unicast_source_receives_what_a_push_socket_sends() {
        let source = bind_source("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let push = bind_push(source.local_addr().unwrap(), 1).unwrap();
        push.send(&[0x47; 188]).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = source.recv(&mut buf).await.unwrap();
        assert_eq!(n, 188);
        assert!(buf[..n].iter().all(|&b| b == 0x47));
    }
}
