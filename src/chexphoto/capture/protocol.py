"""The CheXpeditor UDP protocol: message formats, authentication, and the controller's row logic.

Wire format (compatible with the original CheXpeditor Android app):

* request, one UTF-8 datagram: ``{seq}|{filename}`` where ``filename`` is
  :func:`chexphoto.capture.naming.make_filename` of the row;
* replies: ``OK|{filename}`` once the photo is saved, ``MISMATCH`` when ``seq`` is not the one the
  camera expects; our camera server also answers ``ERROR|{reason}`` to requests it refuses.

With a shared token (``--token`` on both sides) every message is authenticated with HMAC-SHA256
and carries a counter against replays::

    request:  {seq}|{filename}|n={counter}|mac={hex}      mac = HMAC(token, "{seq}|{filename}|n={counter}")
    reply:    {reply}|n={counter}|mac={hex}                mac = HMAC(token, "reply|{reply}|n={counter}")

``counter`` is chosen by the controller for every attempt and must be larger than any counter
the camera has accepted before (the controller uses microseconds since the epoch, bumped to stay
strictly increasing), so a captured request cannot be replayed, even after a camera restart (the
camera keeps the last counter in its state file). A reply echoes the counter of the request it
answers and is MACed with a different prefix, so neither an old reply nor a reflected request can
be taken for the answer to the current attempt.

:class:`RowExchange` is the controller's per-row state machine; it has no sockets and no clock of
its own, so every rule of the protocol is testable without a network.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import time
import unicodedata
from dataclasses import dataclass, field

from chexphoto.capture.naming import MAX_FILENAME_BYTES

SEP = "|"
OK = "OK"
MISMATCH = "MISMATCH"
ERROR = "ERROR"

#: largest datagram read from the socket (the UDP maximum, so a huge datagram is read whole)
MAX_DATAGRAM = 65536
#: requests longer than this are refused without looking further
MAX_REQUEST_BYTES = 1024
#: a saved photo's name gets ".jpg" appended at most: keep the stored name within the limit
MAX_NAME_BYTES = MAX_FILENAME_BYTES - len(".jpg")

_SEQ_RE = re.compile(r"^(0|[1-9][0-9]{0,17})$")
_COUNTER_RE = re.compile(r"^(0|[1-9][0-9]{0,19})$")
_MAC_RE = re.compile(r"^[0-9a-f]{64}$")

# ERROR reasons the controller acts on (the text after "ERROR|" starts with one of these)
REASON_UNAUTHENTICATED = "unauthenticated"
REASON_REPLAYED = "replayed"


class ProtocolError(ValueError):
    """A datagram that breaks the protocol; ``str(exc)`` is the reason sent back in ``ERROR|``."""


@dataclass(frozen=True)
class Request:
    seq: int
    filename: str
    counter: int | None = None  # only with a token


@dataclass(frozen=True)
class Reply:
    kind: str  # OK, MISMATCH, ERROR
    text: str = ""  # the filename of an OK, the reason of an ERROR
    counter: int | None = None
    authenticated: bool = False


def compute_mac(token: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` under ``token``, lower-case hex."""
    return hmac.new(token.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def _strip_mac(text: str, token: str, prefix: str) -> tuple[str, int]:
    """Check and remove ``|n=..|mac=..``; returns (inner message, counter)."""
    body, sep, mac = text.rpartition("|mac=")
    if not sep or not _MAC_RE.match(mac):
        raise ProtocolError(f"{REASON_UNAUTHENTICATED}: message has no mac")
    inner, sep, counter_text = body.rpartition("|n=")
    if not sep or not _COUNTER_RE.match(counter_text):
        raise ProtocolError(f"{REASON_UNAUTHENTICATED}: message has no counter")
    if not hmac.compare_digest(compute_mac(token, prefix + body), mac):
        raise ProtocolError(f"{REASON_UNAUTHENTICATED}: bad mac (do both sides use the same --token?)")
    return inner, int(counter_text)


def check_filename(filename: str, seq: int) -> None:
    """Raise :class:`ProtocolError` unless ``filename`` is safe to save in a flat export folder.

    Refused: empty, ``/``, ``\\``, ``..``, ``|``, NUL and other control characters, a leading
    ``.`` (hidden files, and the camera's own state file), longer than the file system allows,
    and a name that does not start with ``{seq}__`` (the label is read from the name later).
    """
    if not filename:
        raise ProtocolError("empty filename")
    if any(ch in filename for ch in "/\\|"):
        raise ProtocolError("filename contains a path separator or the field separator")
    if ".." in filename:
        raise ProtocolError("filename contains '..'")
    if any(ord(ch) < 32 or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in filename):
        raise ProtocolError("filename contains control characters")
    if filename.startswith("."):
        raise ProtocolError("filename starts with '.'")
    if len(filename.encode("utf-8")) > MAX_NAME_BYTES:
        raise ProtocolError(f"filename longer than {MAX_NAME_BYTES} bytes")
    if not filename.startswith(f"{seq}__"):
        raise ProtocolError("filename does not start with the sequence number")


def format_request(seq: int, filename: str, *, token: str | None = None, counter: int | None = None) -> bytes:
    """Encode one request; with ``token`` the counter and MAC are appended."""
    message = f"{int(seq)}{SEP}{filename}"
    if token is None:
        return message.encode("utf-8")
    if counter is None:
        raise ValueError("an authenticated request needs a counter")
    body = f"{message}|n={int(counter)}"
    return f"{body}|mac={compute_mac(token, body)}".encode()


def parse_request(data: bytes, *, token: str | None = None) -> Request:
    """Decode and check one request datagram; :class:`ProtocolError` says why it is refused."""
    if len(data) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"datagram longer than {MAX_REQUEST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("datagram is not UTF-8") from None
    if SEP not in text:
        raise ProtocolError("no separator between sequence number and file name")
    counter = None
    if token is not None:
        text, counter = _strip_mac(text, token, "")
    elif "|mac=" in text:
        raise ProtocolError("request is authenticated but this camera runs without --token")
    seq_text, _, filename = text.partition(SEP)
    if not _SEQ_RE.match(seq_text):
        raise ProtocolError("sequence number is not a non-negative integer")
    seq = int(seq_text)
    check_filename(filename, seq)
    return Request(seq, filename, counter)


def format_reply(kind: str, text: str = "", *, token: str | None = None, counter: int | None = None) -> bytes:
    """Encode ``OK|filename``, ``MISMATCH`` or ``ERROR|reason``; MACed when token and counter given."""
    if kind == MISMATCH:
        reply = MISMATCH
    else:
        reply = f"{kind}{SEP}{text.replace(SEP, '/')}" if kind == ERROR else f"{kind}{SEP}{text}"
    if token is None or counter is None:
        return reply.encode("utf-8")
    body = f"{reply}|n={int(counter)}"
    return f"{body}|mac={compute_mac(token, 'reply|' + body)}".encode()


def parse_reply(data: bytes, *, token: str | None = None) -> Reply:
    """Decode a reply. With ``token``, an unauthenticated reply is returned with
    ``authenticated=False`` (the caller ignores it but may report it); malformed data raises
    :class:`ProtocolError`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("reply is not UTF-8") from None
    text = text.strip(" \t\r\n\x00")  # tolerate a phone app's padding or newline
    counter, authenticated = None, False
    if token is not None and "|mac=" in text:
        try:
            text, counter = _strip_mac(text, token, "reply|")
            authenticated = True
        except ProtocolError:
            pass
    kind, sep, rest = text.partition(SEP)
    if kind == MISMATCH:
        return Reply(MISMATCH, "", counter, authenticated)
    if kind in (OK, ERROR) and sep:
        return Reply(kind, rest, counter, authenticated)
    raise ProtocolError(f"unknown reply {text[:80]!r}")


def ok_names(reply_text: str, filename: str) -> bool:
    """Does the text of an ``OK|...`` reply name the photo ``filename``?

    Exactly the name sent, tolerating what a phone app might add around the same name: blanks or
    NUL padding, a folder prefix, a ``.jpg``/``.jpeg`` extension. The name itself (sequence
    number, nonce and path) must be identical.
    """
    name = reply_text.strip(" \t\r\n\x00").replace("\\", "/").rsplit("/", 1)[-1]
    if name == filename:
        return True
    lower = name.lower()
    return any(lower.endswith(ext) and name[: -len(ext)] == filename for ext in (".jpg", ".jpeg"))


class CounterClock:
    """Strictly increasing request counters: microseconds since the epoch, bumped if needed.

    Time-based so that a restarted controller still sends counters above everything the camera
    accepted before (as long as the computer's clock does not go back).
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


class Outcome(enum.Enum):
    WAIT = "wait"  # nothing to do until next_deadline()
    RESEND = "resend"  # send another attempt (fresh socket, same filename)
    CONFIRMED = "confirmed"  # an OK with our filename: the photo of this row is saved
    UNCONFIRMED = "unconfirmed"  # MISMATCH and no OK within the timeout: advance, settle at compile
    FAILED = "failed"  # --retries attempts timed out: stop
    ABORT = "abort"  # the camera refuses us for good (authentication): stop


@dataclass
class RowExchange:
    """Controller side of one row: decides from replies and the time what happens next.

    Every attempt of the row carries the same filename, so an ``OK`` answering any attempt (a
    slow camera answering an earlier one) confirms the row. Replies only ever arrive on sockets
    opened for this row, so a stale answer to an earlier row cannot reach this state machine;
    even so an ``OK`` for another filename is ignored. A ``MISMATCH`` does not end the row at
    once: an ``OK`` may still be on its way on another socket (the camera answers a duplicated
    request with ``MISMATCH`` only after it has moved on), so the row waits ``timeout`` after the
    ``MISMATCH`` *and* after its last attempt, then ends unconfirmed. Waiting a full timeout
    after the last send also means no request of this row is still in flight (given one-way
    delays shorter than the timeout) when the next x-ray goes on screen.
    """

    seq: int
    filename: str
    timeout: float
    retries: int
    token: str | None = None
    sent_at: list[float] = field(default_factory=list)
    counters: list[int | None] = field(default_factory=list)
    timeouts: int = 0
    mismatch_at: float | None = None
    last_error: str = ""
    ignored: int = 0  # replies that were not for us (bad MAC, other filename, garbage)
    outcome: Outcome = Outcome.WAIT

    def request(self, now: float, counter: int | None = None) -> bytes:
        """Payload of the next attempt (registers it as sent at ``now``)."""
        self.sent_at.append(now)
        self.counters.append(counter if self.token is not None else None)
        return format_request(self.seq, self.filename, token=self.token, counter=counter)

    @property
    def attempts(self) -> int:
        return len(self.sent_at)

    def next_deadline(self) -> float:
        """Time at which :meth:`tick` has something to decide."""
        last = self.sent_at[-1]
        if self.mismatch_at is not None:
            return max(self.mismatch_at, last) + self.timeout
        return last + self.timeout

    def on_reply(self, attempt: int, data: bytes, now: float) -> Outcome:
        """Feed a datagram received on attempt ``attempt``'s socket."""
        if self.outcome not in (Outcome.WAIT, Outcome.RESEND):
            return self.outcome
        try:
            reply = parse_reply(data, token=self.token)
        except ProtocolError as exc:
            self.ignored += 1
            self.last_error = str(exc)
            return Outcome.WAIT
        if self.token is not None and (not reply.authenticated or reply.counter != self.counters[attempt]):
            self.ignored += 1
            if reply.kind == ERROR:
                self.last_error = f"unauthenticated reply: ERROR|{reply.text}"
            return Outcome.WAIT
        if reply.kind == OK:
            if ok_names(reply.text, self.filename):
                self.outcome = Outcome.CONFIRMED
                return self.outcome
            self.ignored += 1
            return Outcome.WAIT
        if reply.kind == MISMATCH:
            if self.mismatch_at is None:
                self.mismatch_at = now
            return Outcome.WAIT
        # ERROR
        self.last_error = f"ERROR|{reply.text}"
        if reply.text.startswith(REASON_REPLAYED):
            return Outcome.WAIT  # a duplicated copy of an attempt we sent: harmless
        if reply.text.startswith(REASON_UNAUTHENTICATED) or "without --token" in reply.text:
            self.outcome = Outcome.ABORT
            return self.outcome
        return Outcome.WAIT

    def tick(self, now: float) -> Outcome:
        """Decide after time has passed: keep waiting, resend, end unconfirmed, or fail."""
        if self.outcome not in (Outcome.WAIT, Outcome.RESEND):
            return self.outcome
        if now < self.next_deadline():
            return Outcome.WAIT
        if self.mismatch_at is not None:
            self.outcome = Outcome.UNCONFIRMED
            return self.outcome
        self.timeouts += 1
        if self.timeouts >= self.retries:
            self.outcome = Outcome.FAILED
            return self.outcome
        return Outcome.RESEND
