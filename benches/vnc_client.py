#!/usr/bin/env python3
"""A small RFB 3.8 viewer (no security, Raw encoding) for benches/vnc.sh.

  vnc_client.py latency PORT N   types N characters at SYSLINUX's boot: prompt, one at a time,
                                 and prints for each the seconds from the key press to the first
                                 framebuffer update that changes the screen (the echo); then
                                 erases them with Backspace.
  vnc_client.py idle PORT SECS   connects, asks for incremental updates like an idle viewer and
                                 keeps the connection open for SECS seconds.
  vnc_client.py shot PORT FILE   saves the whole screen as a binary PPM.
"""
import select
import socket
import struct
import sys
import time


class Viewer:
    def __init__(self, port, host="127.0.0.1"):
        self.s = socket.create_connection((host, port), timeout=20)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._recv(12)
        self.s.sendall(b"RFB 003.008\n")
        types = self._recv(self._recv(1)[0])
        if 1 not in types:
            raise SystemExit(f"the server wants authentication: {list(types)}")
        self.s.sendall(b"\x01")
        if struct.unpack(">I", self._recv(4))[0] != 0:
            raise SystemExit("security handshake failed")
        self.s.sendall(b"\x01")
        init = self._recv(24)
        self.width, self.height = struct.unpack(">HH", init[:4])
        pf = init[4:20]
        self.bpp = pf[0]
        self.big = pf[2] != 0
        self.max = struct.unpack(">HHH", pf[4:10])
        self.shift = pf[10:13]
        self._recv(struct.unpack(">I", init[20:24])[0])
        # SetEncodings: Raw only, so that every update costs the server the same.
        self.s.sendall(struct.pack(">BBHi", 2, 0, 1, 0))
        self.step = self.bpp // 8
        self.fb = bytearray(self.width * self.height * self.step)

    def apply(self, rects):
        """Copies the rectangles into the local framebuffer; returns the rows whose pixels
        changed."""
        changed = set()
        stride, step = self.width * self.step, self.step
        for x, y, w, h, data in rects:
            for r in range(h):
                o = (y + r) * stride + x * step
                row = data[r * w * step:(r + 1) * w * step]
                if self.fb[o:o + len(row)] != row:
                    changed.add(y + r)
                    self.fb[o:o + len(row)] = row
        return changed

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError("the server closed the connection")
            buf += chunk
        return bytes(buf)

    def request(self, incremental):
        self.s.sendall(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.width, self.height))

    def key(self, keysym):
        self.s.sendall(struct.pack(">BBHI", 4, 1, 0, keysym) + struct.pack(">BBHI", 4, 0, 0, keysym))

    def update(self):
        """Reads messages until a FramebufferUpdate; returns its rectangles [(x, y, w, h, raw)]."""
        while True:
            t = self._recv(1)[0]
            if t == 0:
                break
            if t == 2:
                continue
            if t == 3:
                self._recv(struct.unpack(">3xI", self._recv(7))[0])
                continue
            raise SystemExit(f"unexpected server message {t}")
        n = struct.unpack(">xH", self._recv(3))[0]
        rects = []
        for _ in range(n):
            x, y, w, h, enc = struct.unpack(">HHHHi", self._recv(12))
            data = self._recv(w * h * self.bpp // 8) if enc == 0 else b""
            rects.append((x, y, w, h, data))
        return rects

    def screen(self):
        """The whole screen as RGB bytes."""
        self.request(False)
        rgb = bytearray(self.width * self.height * 3)
        step = self.step
        for x, y, w, h, data in self.update():
            for i in range(w * h):
                p = data[i * step:(i + 1) * step]
                v = int.from_bytes(p, "big" if self.big else "little")
                o = ((y + i // w) * self.width + x + i % w) * 3
                for c in range(3):
                    m = self.max[c] or 1
                    rgb[o + c] = ((v >> self.shift[c]) & m) * 255 // m
        return bytes(rgb)


def latency(port, n, cell_height=16):
    """Key press to the update that draws its echo. In text mode the cursor is an underline
    in the last lines of a character cell; a changed line above them is a drawn glyph."""
    v = Viewer(port)
    v.request(False)
    v.apply(v.update())
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(n):
        # Let the previous echo settle for a while, applying what arrives (the cursor blinks
        # several times a second, so "until quiet" would never end).
        v.request(True)
        deadline = time.monotonic() + 0.5
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([v.s], [], [], left)[0]:
                break
            v.apply(v.update())
            v.request(True)
        t0 = time.perf_counter()
        v.key(ord(letters[i % 26]))
        while True:
            rows = v.apply(v.update())
            if any(r % cell_height < cell_height - 3 for r in rows):
                break
            v.request(True)
        print(f"{time.perf_counter() - t0:.6f}", flush=True)
    for _ in range(n):
        v.key(0xFF08)  # BackSpace
    v.s.close()


def idle(port, secs):
    v = Viewer(port)
    v.request(False)
    v.apply(v.update())
    end = time.monotonic() + secs
    v.request(True)
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        if select.select([v.s], [], [], left)[0]:
            v.apply(v.update())
            v.request(True)
    v.s.close()


def shot(port, path):
    v = Viewer(port)
    rgb = v.screen()
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (v.width, v.height) + rgb)


if __name__ == "__main__":
    mode, port, arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    {"latency": lambda: latency(port, int(arg)), "idle": lambda: idle(port, float(arg)),
     "shot": lambda: shot(port, arg)}[mode]()
