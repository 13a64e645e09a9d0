"""The feed's WebSocket reader (ingest/ws_reader.py) on a real socket pair: the server's frames are
written by hand here (RFC 6455 layout), not by the library the reader uses, and what the reader
sends back is parsed by hand too."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from websocket import ABNF, WebSocketConnectionClosedException, WebSocketProtocolException

from cryptopipe.ingest.ws_reader import MessageReader

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None, rsv1: bool = False) -> bytes:
    """A frame as a server writes it (unmasked), or masked when ``mask`` is given."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + payload
    return head + payload


def parse_client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """What the reader sent: client frames, which must be masked."""
    out = []
    pos = 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert second & 0x80, "a client frame must be masked"
        n = second & 0x7F
        pos += 2
        assert n < 126, "control frames only"
        mask = data[pos : pos + 4]
        pos += 4
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[pos : pos + n]))
        pos += n
        out.append((first & 0x0F, payload))
    return out


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    client.settimeout(2)
    server.settimeout(2)
    yield server, client
    server.close()
    client.close()


def read_all(reader: MessageReader, count: int) -> list[tuple[int, bytes]]:
    messages: list[tuple[int, bytes]] = []
    while len(messages) < count:
        messages += reader.read()
    return messages


def sent_back(server: socket.socket) -> list[tuple[int, bytes]]:
    server.settimeout(0.5)
    data = b""
    try:
        while chunk := server.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return parse_client_frames(data)


def test_many_frames_in_one_read_come_back_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    payloads = [b'{"n":%d}' % i for i in range(500)]
    server.sendall(b"".join(frame(TEXT, p) for p in payloads))
    reader = MessageReader(client)
    assert read_all(reader, 500) == [(ABNF.OPCODE_TEXT, p) for p in payloads]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 100])
def test_frames_split_anywhere_across_reads(pair: tuple[socket.socket, socket.socket], chunk_bytes: int) -> None:
    """Lengths of every header form (7-bit, 16-bit, 64-bit), read a few bytes at a time: a read that
    ends inside a frame returns nothing yet, and nothing is lost or merged."""
    server, client = pair
    payloads = [b"", b"a", b"x" * 125, b"y" * 126, b"z" * 300, bytes(range(256)) * 300]  # the last: 76,800 > 65,535
    stream = b"".join(frame(BINARY if i % 2 else TEXT, p) for i, p in enumerate(payloads))
    reader = MessageReader(client, chunk_bytes=chunk_bytes)
    server.sendall(stream[:50_000])
    got = []
    while len(got) < 5:
        got += reader.read()
    server.sendall(stream[50_000:])
    got += read_all(reader, 1)
    assert got == [(ABNF.OPCODE_BINARY if i % 2 else ABNF.OPCODE_TEXT, p) for i, p in enumerate(payloads)]


def test_a_fragmented_message_is_joined_and_a_ping_inside_it_is_answered(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    server.sendall(
        frame(TEXT, b'{"a":', fin=False)
        + frame(PING, b"are you there")
        + frame(CONT, b'"b"', fin=False)
        + frame(CONT, b"}")
        + frame(PONG, b"unsolicited")
        + frame(TEXT, b"next")
    )
    reader = MessageReader(client)
    assert read_all(reader, 2) == [(ABNF.OPCODE_TEXT, b'{"a":"b"}'), (ABNF.OPCODE_TEXT, b"next")]
    assert sent_back(server) == [(PONG, b"are you there")]


def test_text_that_is_not_utf8_reaches_the_caller_as_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    """The handler dead-letters such a frame; the reader must neither drop it nor fail the connection."""
    server, client = pair
    server.sendall(frame(TEXT, b'{"price":"\xff\xfe"}') + frame(TEXT, b"after"))
    assert read_all(MessageReader(client), 2) == [
        (ABNF.OPCODE_TEXT, b'{"price":"\xff\xfe"}'),
        (ABNF.OPCODE_TEXT, b"after"),
    ]


def test_the_servers_close_is_returned_and_echoed(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    close_payload = struct.pack("!H", 1001) + b"going away"
    server.sendall(frame(TEXT, b"last") + frame(CLOSE, close_payload) + frame(TEXT, b"after the close"))
    reader = MessageReader(client)
    assert read_all(reader, 2) == [(ABNF.OPCODE_TEXT, b"last"), (ABNF.OPCODE_CLOSE, close_payload)]
    assert sent_back(server) == [(CLOSE, close_payload)]


def test_the_end_of_the_stream_comes_after_the_messages_read_before_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    server.sendall(frame(TEXT, b"one") + frame(TEXT, b"two") + frame(TEXT, b"cut short")[:-3])
    server.shutdown(socket.SHUT_WR)
    reader = MessageReader(client)
    got = []
    with pytest.raises(WebSocketConnectionClosedException):
        while True:
            got += reader.read()
    assert got == [(ABNF.OPCODE_TEXT, b"one"), (ABNF.OPCODE_TEXT, b"two")]


@pytest.mark.parametrize(
    "bad",
    [
        frame(TEXT, b"masked by the server", mask=b"\x01\x02\x03\x04"),
        frame(TEXT, b"reserved bit without an extension", rsv1=True),
        frame(CONT, b"a continuation of nothing"),
        frame(0x3, b"reserved opcode"),
        frame(PING, b"p" * 126),  # a control frame longer than 125 bytes
    ],
    ids=["masked", "rsv1", "stray-continuation", "reserved-opcode", "long-ping"],
)
def test_a_frame_that_breaks_the_protocol_ends_the_connection_after_what_came_before(
    pair: tuple[socket.socket, socket.socket], bad: bytes
) -> None:
    server, client = pair
    server.sendall(frame(TEXT, b"good") + bad + frame(TEXT, b"never seen"))
    reader = MessageReader(client)
    got = []
    with pytest.raises(WebSocketProtocolException, match="broke the WebSocket protocol"):
        while True:
            got += reader.read()
    assert got == [(ABNF.OPCODE_TEXT, b"good")]
    codes = [struct.unpack("!H", payload[:2])[0] for opcode, payload in sent_back(server) if opcode == CLOSE]
    assert codes == [1002], "the reader tells the server why (protocol error)"


def test_a_quiet_socket_times_out_as_the_feed_expects(pair: tuple[socket.socket, socket.socket]) -> None:
    _server, client = pair
    client.settimeout(0.05)
    with pytest.raises(TimeoutError):
        MessageReader(client).read()
