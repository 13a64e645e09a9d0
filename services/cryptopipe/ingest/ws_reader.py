"""The feed's WebSocket receive: whole messages cut out of large socket reads.

websocket-client (which still opens the connection, sends the subscriptions and closes) reads each
frame with three ``socket.recv`` calls: header, length, payload. Each call releases the GIL and has
to win it back from the producer's thread, and the frame reader is pure Python on top (profiled in
docs/benchmarks.md: ~8 µs a frame alone, ~14 µs a trade in the service). This reader takes whatever
the socket holds, up to ``chunk_bytes``, in one call and lets websockets' sans-I/O protocol (the
RFC 6455 frame parser of the ``websockets`` library, no I/O of its own) cut the frames out of it.

What it does with the frames, as websocket-client's ``recv_data`` did:
- text and binary messages are returned whole as bytes, fragments joined; a text frame that is not
  UTF-8 is returned as it is (the handler dead-letters it; the connection stays up);
- a ping is answered with a pong, a pong is ignored;
- the server's close is returned as an ``OPCODE_CLOSE`` message (the protocol has queued the echo,
  which is sent);
- the end of the stream raises ``WebSocketConnectionClosedException``, a frame that breaks the
  protocol (a masked server frame, a reserved bit, a stray continuation) raises
  ``WebSocketProtocolException``, a socket timeout raises ``TimeoutError``: the feed's session
  handles those as it handled websocket-client's.
"""

from __future__ import annotations

import socket
from typing import Final, cast

from websocket import ABNF, WebSocketConnectionClosedException, WebSocketProtocolException
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

# a read takes what the kernel holds up to this: one call for hundreds of frames when a backlog
# arrives; a live feed's read returns a frame or two
DEFAULT_CHUNK_BYTES: Final = 256 * 1024

Message = tuple[int, bytes]  # (websocket-client's ABNF opcode, payload)

_DATA: Final = {Opcode.TEXT: ABNF.OPCODE_TEXT, Opcode.BINARY: ABNF.OPCODE_BINARY}


class MessageReader:
    """Reads one connected client socket (``ws.sock`` of a websocket-client ``WebSocket``, before
    any ``recv`` on it) and returns its messages. Not thread-safe: the feed's reader thread owns it."""

    def __init__(self, sock: socket.socket, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self._sock = sock
        self._chunk_bytes = chunk_bytes
        # no message size limit, as websocket-client had none: a snapshot frame is never refused
        self._protocol = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        self._fragments: list[bytes] = []
        self._fragmented_opcode = 0
        # the end of the connection, raised once the messages read before it have been returned
        self._ended: Exception | None = None

    def read(self) -> list[Message]:
        """Blocks for one socket read (the socket's timeout applies: ``TimeoutError``) and returns
        the messages it completed, in order: none when it held only part of a frame. Messages
        complete before the end of the stream or a protocol error are returned first; the next call
        raises."""
        if self._ended is not None:
            raise self._ended
        data = self._sock.recv(self._chunk_bytes)
        protocol = self._protocol
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        # past the handshake (done by websocket-client) the protocol's events are frames only
        frames = cast(list[Frame], protocol.events_received())
        self._send_replies()
        messages: list[Message] = []
        for frame in frames:
            opcode = frame.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if frame.fin:
                    messages.append((_DATA[opcode], bytes(frame.data)))
                else:
                    self._fragmented_opcode = _DATA[opcode]
                    self._fragments = [bytes(frame.data)]
            elif opcode is Opcode.CONT:
                self._fragments.append(bytes(frame.data))
                if frame.fin:
                    messages.append((self._fragmented_opcode, b"".join(self._fragments)))
                    self._fragments = []
            elif opcode is Opcode.CLOSE:
                messages.append((ABNF.OPCODE_CLOSE, bytes(frame.data)))
                return messages  # the protocol discards whatever follows a close
            # a ping's pong is already sent; a pong needs nothing
        if not data:  # first: a stream cut inside a frame is a closed connection, not a bad frame
            self._ended = WebSocketConnectionClosedException("the server closed the connection")
        elif protocol.parser_exc is not None:
            self._ended = WebSocketProtocolException(f"the server broke the WebSocket protocol: {protocol.parser_exc}")
        if self._ended is not None and not messages:
            raise self._ended
        return messages

    def _send_replies(self) -> None:
        """Pongs, the echo of a close, the close of a failed protocol: written as they come. The
        reader thread is the only writer once the subscriptions are sent."""
        for out in self._protocol.data_to_send():
            if out:  # b"" is the protocol's "half-close the TCP connection" mark
                try:
                    self._sock.sendall(out)
                except OSError:
                    return  # the read side reports the broken connection
