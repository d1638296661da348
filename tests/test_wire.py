"""The sans-IO pieces of the wire protocol: framing and handshake payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securesess import ProtocolViolation
from securesess.stream.frames import FrameReader, frame
from securesess.stream.payload import CERTIFICATE, decode_payload, encode_payload
from securesess.stream.records import MAX_BODY, RecordReader, RecordType, RecordWriter
from tests.noise_pairs import complete, make_pair

frame_lists = st.lists(st.binary(max_size=70_000).map(lambda b: b[:65535]), max_size=6)


@given(frame_lists, st.lists(st.integers(min_value=1, max_value=100_000), min_size=1))
def test_frames_survive_any_split_into_reads(frames: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(frame(f) for f in frames)
    reader = FrameReader()
    received: list[bytes] = []
    position, index = 0, 0
    while position < len(wire):
        size = cuts[index % len(cuts)]
        index += 1
        reader.feed(wire[position : position + size])
        position += size
        while (data := reader.next_frame()) is not None:
            received.append(bytes(data))
    assert received == frames
    assert reader.buffered == 0


def test_a_frame_split_inside_its_length_field() -> None:
    reader = FrameReader()
    reader.feed(b"\x00")
    assert reader.next_frame() is None
    assert reader.next_length() is None
    reader.feed(b"\x03ab")
    assert reader.next_length() == 3
    assert reader.next_frame() is None
    reader.feed(b"c\x00\x01z")
    assert [bytes(reader.next_frame() or b"-"), bytes(reader.next_frame() or b"-")] == [
        b"abc",
        b"z",
    ]


def test_feeding_with_frames_waiting_is_a_bug() -> None:
    reader = FrameReader()
    reader.feed(frame(b"waiting"))
    with pytest.raises(RuntimeError):
        reader.feed(b"more")


def test_frames_have_a_maximum() -> None:
    assert len(frame(bytes(65535))) == 65537
    with pytest.raises(ValueError, match="at most 65535"):
        frame(bytes(65536))


def test_payload_round_trip_and_unknown_fields() -> None:
    assert decode_payload(b"") == {}
    encoded = encode_payload({CERTIFICATE: b"cert"})
    assert decode_payload(encoded) == {CERTIFICATE: b"cert"}
    # Types of 128 and above are optional and skipped when unknown.
    assert decode_payload(encoded + bytes([200, 0, 2]) + b"xy") == {CERTIFICATE: b"cert"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x01\x00", "inside a field header"),
        (b"\x01\x00\x05abc", "overruns"),
        (b"\x07\x00\x00", "unknown critical"),
        (b"\x01\x00\x00\x01\x00\x00", "appears twice"),
    ],
)
def test_malformed_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolViolation, match=message):
        decode_payload(payload)


@given(st.binary(max_size=300))
def test_any_payload_decodes_or_is_a_protocol_violation(payload: bytes) -> None:
    try:
        fields = decode_payload(payload)
    except ProtocolViolation:
        return
    assert set(fields) <= {CERTIFICATE}


# -- the record layer, sans-IO ---------------------------------------------------------


def _record_pair(rekey_after: int) -> tuple[RecordWriter, FrameReader, RecordReader]:
    initiator, responder = make_pair("Noise_NN_25519_AESGCM_SHA256")
    complete(initiator, responder)
    sender, receiver = initiator.into_transport(), responder.into_transport()
    frames = FrameReader()
    return RecordWriter(sender, rekey_after), frames, RecordReader(frames, receiver)


@given(
    st.lists(st.binary(min_size=1, max_size=3 * MAX_BODY // 2), min_size=1, max_size=5),
    st.integers(min_value=2, max_value=5),
    st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=200_000), min_size=1, max_size=5),
)
def test_records_arrive_whole_whatever_the_reads_and_limits(
    writes: list[bytes], rekey_after: int, cuts: list[int], limits: list[int]
) -> None:
    writer, frames, reader = _record_pair(rekey_after)
    wire = b"".join(bytes(writer.seal_data(memoryview(w))) for w in writes)
    wire += bytes(writer.seal(RecordType.END))
    received = bytearray()
    control = None
    position, step = 0, 0
    while control is None:
        result = reader.read(limits[step % len(limits)])
        step += 1
        if result is None:
            assert position < len(wire), "the reader wants more than was sent"
            size = cuts[step % len(cuts)]
            frames.feed(wire[position : position + size])
            position += size
            continue
        data, control = result
        received += data
    assert received == b"".join(writes)
    assert control == (RecordType.END, bytearray())


def test_a_read_is_capped_near_its_limit_but_takes_whole_records() -> None:
    writer, frames, reader = _record_pair(2**20)
    frames.feed(bytes(writer.seal_data(memoryview(bytes(3 * MAX_BODY)))))
    first = reader.read(10)
    assert first is not None
    assert len(first[0]) == MAX_BODY  # one whole record, though more was asked
    second = reader.read(10 * MAX_BODY)
    assert second is not None
    assert len(second[0]) == 2 * MAX_BODY
    assert reader.read(10) is None


def test_a_key_carries_at_least_one_record_besides_its_rekey() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        _record_pair(1)
    writer, _, _ = _record_pair(2)
    # With the smallest budget the first record (the responder's ACCEPT) is
    # one record of 19 bytes, no REKEY before it; then each key carries a
    # REKEY and one other record.
    assert len(writer.seal(RecordType.ACCEPT)) == 19
    assert len(writer.seal_data(memoryview(b"x"))) == 19 + 20
    assert len(writer.seal_data(memoryview(b"y"))) == 19 + 20
