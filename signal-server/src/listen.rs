//! Binding the server's sockets. An unspecified IPv6 address (`[::]`) means both families: the
//! socket is made dual-stack explicitly (IPV6_V6ONLY off), so `--listen [::]:8686` serves IPv4
//! clients too whatever the system's default (Linux's `net.ipv6.bindv6only`, BSD and Windows,
//! where it is on). IPv4 clients then appear as IPv4-mapped addresses, which the server turns
//! back into IPv4 (`to_canonical`) wherever it looks at an address.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// How many connections may wait to be accepted.
const BACKLOG: i32 = 1024;

fn socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A TCP listener on `addr` (dual-stack on `[::]`). Call within the tokio runtime.
pub fn tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket(addr, Type::STREAM, Protocol::TCP)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// A UDP socket on `addr` (dual-stack on `[::]`). Call within the tokio runtime.
pub fn udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket(addr, Type::DGRAM, Protocol::UDP)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}
