"""A fault-injecting UDP relay between controller and camera (tests, and rehearsing a bad Wi-Fi).

The controller talks to the relay as if it were the camera. Each client address (the controller
uses a fresh socket per attempt) gets its own upstream socket, so replies find their way back to
the socket that sent the request, as they would on a real network. Every datagram, in either
direction, may be dropped, duplicated, delayed and reordered; all choices come from seeded random
streams (one per direction), so a run's faults are reproducible up to thread timing.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from chexphoto.seeding import derive_rng

MAX_DATAGRAM = 65536


@dataclass(frozen=True)
class Faults:
    """Fault rates of one direction."""

    drop: float = 0.0  # probability a datagram is lost
    duplicate: float = 0.0  # probability it is delivered twice
    reorder: float = 0.0  # probability it is held back by an extra ``reorder_delay``
    delay: tuple[float, float] = (0.0, 0.0)  # uniform base delay range, seconds
    reorder_delay: float = 0.05

    def __post_init__(self):
        for name in ("drop", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if not 0.0 <= self.delay[0] <= self.delay[1]:
            raise ValueError(f"delay must be a range lo <= hi, got {self.delay}")


class FaultyRelay:
    """Listens on ``listen`` and forwards to ``target`` with ``up`` / ``down`` faults.

    ``up`` applies to controller -> camera datagrams, ``down`` to replies. ``target`` may be
    changed while running (e.g. after restarting the camera on another port).
    """

    def __init__(self, target: tuple[str, int], *, up: Faults | None = None, down: Faults | None = None,
                 seed: int = 0, listen: tuple[str, int] = ("127.0.0.1", 0), idle_close: float = 5.0):
        self.target = target
        self.up, self.down = up or Faults(), down or Faults()
        self._rng = {"up": derive_rng("chexphoto.relay", seed, "up"),
                     "down": derive_rng("chexphoto.relay", seed, "down")}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(listen)
        self.sock.setblocking(False)
        self.idle_close = idle_close
        self._upstream: dict[tuple, tuple[socket.socket, float]] = {}  # client -> (socket, last use)
        self._client_of: dict[socket.socket, tuple] = {}
        self._queue: list = []  # (due, tiebreak, socket, data, address)
        self._tiebreak = itertools.count()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chexphoto-relay", daemon=True)
        self.stats = {"up": 0, "down": 0, "dropped": 0, "duplicated": 0, "reordered": 0}

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    def start(self) -> FaultyRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop relaying and close every socket (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        for sock, _ in self._upstream.values():
            sock.close()
        self.sock.close()
        self._selector.close()

    def _schedule(self, direction: str, sock: socket.socket, data: bytes, address) -> None:
        faults = self.up if direction == "up" else self.down
        rng = self._rng[direction]
        self.stats[direction] += 1
        if rng.random() < faults.drop:
            self.stats["dropped"] += 1
            return
        copies = 1
        if rng.random() < faults.duplicate:
            copies = 2
            self.stats["duplicated"] += 1
        now = time.monotonic()
        for _ in range(copies):
            delay = float(rng.uniform(*faults.delay)) if faults.delay[1] > 0 else 0.0
            if rng.random() < faults.reorder:
                delay += faults.reorder_delay
                self.stats["reordered"] += 1
            heapq.heappush(self._queue, (now + delay, next(self._tiebreak), sock, data, address))

    def _upstream_for(self, client) -> socket.socket:
        entry = self._upstream.get(client)
        if entry is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.sock.getsockname()[0], 0))
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ)
            self._client_of[sock] = client
        else:
            sock = entry[0]
        self._upstream[client] = (sock, time.monotonic())
        return sock

    def _close_idle(self, now: float) -> None:
        for client, (sock, used) in list(self._upstream.items()):
            if now - used > self.idle_close:
                self._selector.unregister(sock)
                del self._client_of[sock]
                del self._upstream[client]
                sock.close()

    def _run(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 0.05
            if self._queue:
                timeout = min(timeout, max(0.0, self._queue[0][0] - now))
            for key, _ in self._selector.select(timeout):
                sock = key.fileobj
                try:
                    data, address = sock.recvfrom(MAX_DATAGRAM)
                except OSError:
                    continue
                if sock is self.sock:  # controller -> camera
                    self._schedule("up", self._upstream_for(address), data, self.target)
                elif sock in self._client_of:  # camera -> controller
                    client = self._client_of[sock]
                    self._upstream[client] = (sock, time.monotonic())
                    self._schedule("down", self.sock, data, client)
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, sock, data, address = heapq.heappop(self._queue)
                try:
                    sock.sendto(data, address)
                except OSError:
                    pass  # the socket was closed as idle, or the peer is gone: a lost datagram
            if now - last_sweep > 1.0:
                self._close_idle(now)
                last_sweep = now
