"""Spilled bodies come back byte for byte, and their segment files go once taken back."""

from __future__ import annotations

import os
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.live.spill import BodySpill, sweep_spill_folders


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=60), st.randoms())
def test_bodies_come_back_in_any_order_and_segments_are_deleted(tmp_path_factory, bodies, rnd):
    spill = BodySpill(tmp_path_factory.mktemp("spill") / "p0", segment_bytes=512)
    refs = [(spill.put(b), b) for b in bodies]
    rnd.shuffle(refs)
    for ref, body in refs:
        assert spill.take(ref) == body
    assert spill.segments <= 1  # only the segment still being written
    assert len(list(spill.folder.iterdir())) == spill.segments
    spill.close()
    assert not spill.folder.exists()


def test_clear_forgets_everything_and_starts_a_new_segment(tmp_path):
    spill = BodySpill(tmp_path / "p1", segment_bytes=8)
    for _ in range(5):
        spill.put(b"0123456789")
    assert spill.segments == 5
    spill.clear()
    assert spill.segments == 0 and not list(spill.folder.iterdir())
    ref = spill.put(b"again")
    assert spill.take(ref) == b"again"


def test_folders_left_by_crashed_workers_are_swept_after_an_hour(tmp_path):
    old, fresh = tmp_path / "_spill" / "dead", tmp_path / "_spill" / "alive"
    for folder in (old, fresh):
        (folder / "p0-1").mkdir(parents=True)
        (folder / "p0-1" / "00000000.bodies").write_bytes(b"x")
    hour_ago = time.time() - 3700
    for path in [old, old / "p0-1", old / "p0-1" / "00000000.bodies"]:
        os.utime(path, (hour_ago, hour_ago))
    sweep_spill_folders(tmp_path)
    assert not old.exists() and fresh.exists()


def test_a_vanished_segment_is_a_spill_error_that_names_the_file(tmp_path):
    import pytest

    from consumer.live.spill import SpillError

    spill = BodySpill(tmp_path / "p2")
    ref = spill.put(b"body")
    os.close(spill._fds[ref.segment])  # the descriptor is gone (disk or operator trouble)
    with pytest.raises(SpillError) as info:
        spill.take(ref)
    assert "00000000.bodies" in str(info.value) and info.value.filename
    spill._fds.clear()


def test_a_folder_that_cannot_be_made_fails_every_put_with_a_spill_error(tmp_path):
    import pytest

    from consumer.live.spill import SpillError

    blocker = tmp_path / "file"
    blocker.write_text("a regular file where the spill folder's parent should be\n")
    spill = BodySpill(blocker / "p0")
    for _ in range(2):  # the second put (the partition's next batch) fails the same way
        with pytest.raises(SpillError) as info:
            spill.put(b"body")
        assert info.value.filename and str(blocker) in info.value.filename
    blocker.unlink()  # the folder can be made again: spilling resumes on a fresh segment
    assert spill.take(spill.put(b"again")) == b"again"
