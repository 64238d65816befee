#!/usr/bin/env python3
"""Connects to an SRT listener with libsrt itself and says what libsrt reports.

Usage: libsrt_connect.py HOST PORT STREAM_ID [PASSPHRASE]
Prints `connected` or `rejected <code>`, where <code> is libsrt's srt_getrejectreason():
SRT_REJ_* below 1000, the listener's SRT_REJX_* application code (e.g. 1404) above.
srt-live-transmit and ffmpeg print only "application-defined rejection reason", so the tests
ask the library directly (Debian's libsrt1.5, through ctypes).
"""
import ctypes
import ctypes.util
import socket
import struct
import sys

# Socket options, from libsrt's srt.h (SRT_SOCKOPT).
SRTO_PASSPHRASE = 26
SRTO_PBKEYLEN = 27
SRTO_STREAMID = 46


def load():
    for name in ("srt-gnutls", "srt-openssl", "srt"):
        path = ctypes.util.find_library(name)
        if path:
            return ctypes.CDLL(path)
    for path in ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5"):
        try:
            return ctypes.CDLL(path)
        except OSError:
            pass
    sys.exit("libsrt not found (install Debian's libsrt1.5-gnutls or srt-tools)")


def main():
    host, port, stream_id = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    passphrase = sys.argv[4].encode() if len(sys.argv) > 4 else None
    srt = load()
    srt.srt_startup()
    sock = srt.srt_create_socket()
    srt.srt_setsockflag(sock, SRTO_STREAMID, stream_id, len(stream_id))
    if passphrase:
        srt.srt_setsockflag(sock, SRTO_PASSPHRASE, passphrase, len(passphrase))
        keylen = ctypes.c_int(16)
        srt.srt_setsockflag(sock, SRTO_PBKEYLEN, ctypes.byref(keylen), 4)
    addr = struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton(host))
    # sockaddr_in's family is in host byte order.
    addr = struct.pack("=H", socket.AF_INET) + addr[2:]
    status = srt.srt_connect(sock, addr, len(addr))
    if status == -1:
        print(f"rejected {srt.srt_getrejectreason(sock)}")
    else:
        print("connected")
    srt.srt_close(sock)
    srt.srt_cleanup()


main()
