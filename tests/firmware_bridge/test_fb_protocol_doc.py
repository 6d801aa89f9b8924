"""PROTOCOL.md's test vectors are the encoder's output, and decode back to their messages."""

from __future__ import annotations

import re

import pytest

from firmware_bridge import vectors
from firmware_bridge.frames import FrameDecoder, decode_frame, unpack_frame
from firmware_bridge.messages import decode_message

DOC = vectors.PROTOCOL_MD.read_text()


def test_vector_section_is_current() -> None:
    assert vectors.current_section(DOC) == vectors.render(), (
        "PROTOCOL.md's vectors are stale: run python -m firmware_bridge.vectors --write"
    )


def doc_blocks(name: str) -> tuple[bytes, bytes]:
    """The two hex blocks (frame, wire) under ``### Vector `name``` in the document."""
    section = DOC.split(f"### Vector `{name}`", 1)[1].split("### Vector", 1)[0]
    blocks = re.findall(r"```\n([0-9a-f \n]+)```", section)
    assert len(blocks) == 2, f"vector {name}: expected two hex blocks"
    frame, wire = (bytes.fromhex(b.replace("\n", " ")) for b in blocks)
    return frame, wire


@pytest.mark.parametrize("vector", vectors.VECTORS, ids=lambda v: v.name)
def test_document_vector_decodes_to_its_message(vector: vectors.Vector) -> None:
    frame_bytes, wire = doc_blocks(vector.name)
    assert frame_bytes == vector.frame
    assert wire == vector.wire
    assert wire[0] == 0 and wire[-1] == 0 and 0 not in wire[1:-1]
    (frame,) = FrameDecoder().feed(wire)
    assert (frame.node_id, frame.sequence) == (vector.node_id, vector.sequence)
    assert decode_message(frame) == vector.message
    assert decode_frame(wire[1:-1]) == frame == unpack_frame(frame_bytes)


def test_document_states_the_crc_check_value() -> None:
    assert "0x29B1" in DOC and "123456789" in DOC


def test_write_keeps_the_document(tmp_path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "PROTOCOL.md"
    copy.write_text(DOC.replace(vectors.render(), f"{vectors.BEGIN}\nold\n{vectors.END}"))
    assert vectors.write(copy) is True
    assert copy.read_text() == DOC
    assert vectors.write(copy) is False
