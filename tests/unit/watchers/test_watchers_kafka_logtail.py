"""agent.watchers.logtail.FileTail on real files: history skipped, partial lines held, rotation by
rename (the old file finished first), copytruncate, a file missing then appearing, bounds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.watchers.logtail import FileTail

# A real authorizer line (tests/data/kafka/aclauthorizer.log, line 6): the bytes a broker appends.
DATA = Path(__file__).resolve().parents[2] / "data" / "kafka"
AUDIT = (DATA / "aclauthorizer.log").read_text(encoding="utf-8").splitlines()[5]


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as handle:
        handle.write(text)


def test_what_the_file_holds_at_start_is_history(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    append(log, "old one\nold two\n")
    tail = FileTail(log)
    assert tail.read_lines() == []
    append(log, f"{AUDIT}\n")
    assert tail.read_lines() == [AUDIT]
    assert tail.read_lines() == []


def test_from_end_false_reads_an_existing_file_whole(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    append(log, "one\ntwo\n")
    assert FileTail(log, from_end=False).read_lines() == ["one", "two"]


def test_a_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    tail = FileTail(log)
    half = len(AUDIT) // 2
    append(log, AUDIT[:half])
    assert tail.read_lines() == []
    append(log, AUDIT[half:] + "\nnext ")
    assert tail.read_lines() == [AUDIT]
    append(log, "line\r\n")  # a CRLF writer: the line ending is not part of the line
    assert tail.read_lines() == ["next line"]


def test_rotation_by_rename_finishes_the_old_file_then_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    append(log, "history\n")
    tail = FileTail(log)
    append(log, "a1\n")
    assert tail.read_lines() == ["a1"]
    append(log, "a2\na3")  # written before the rename, the last line unterminated
    log.rename(tmp_path / "server.log.1")
    append(tmp_path / "server.log.1", "-end\n")  # the writer still had the old file open
    append(log, "b1\nb2\n")  # the new file
    assert tail.read_lines() == ["a2", "a3-end", "b1", "b2"]
    append(log, "b3\n")
    append(tmp_path / "server.log.1", "too late\n")  # after the switch: not followed any more
    assert tail.read_lines() == ["b3"]


def test_an_unterminated_last_line_of_a_rotated_file_counts(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    tail = FileTail(log)
    append(log, "last words")
    assert tail.read_lines() == []
    log.rename(tmp_path / "server.log.1")
    append(log, "new\n")
    assert tail.read_lines() == ["last words", "new"]


def test_copytruncate_starts_again_at_the_top(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    tail = FileTail(log)
    append(log, "one\ntwo\n")
    assert tail.read_lines() == ["one", "two"]
    shutil.copy(log, tmp_path / "server.log.1")  # logrotate's copytruncate: same inode, emptied
    with log.open("r+b") as handle:
        handle.truncate(0)
    append(log, "three\n")
    assert tail.read_lines() == ["three"]


def test_a_file_missing_at_start_is_read_whole_when_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    tail = FileTail(log)
    assert tail.read_lines() == []
    append(log, "first\nsecond\n")
    assert tail.read_lines() == ["first", "second"]


def test_a_deleted_file_is_read_to_its_end_and_its_successor_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    tail = FileTail(log)
    with log.open("a", encoding="utf-8") as writer:
        writer.write("before\n")
        writer.flush()
        log.unlink()
        writer.write("after the unlink\n")  # the open file lives on
        writer.flush()
        assert tail.read_lines() == ["before", "after the unlink"]
    assert tail.read_lines() == []
    append(log, "reborn\n")
    assert tail.read_lines() == ["reborn"]


def test_reads_are_bounded_and_an_endless_line_comes_in_pieces(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    tail = FileTail(log, max_read=16, max_line=10)
    append(log, "0123456789abcdefghij\nxy\n")  # 24 bytes: two reads of at most 16
    first = tail.read_lines()
    assert first == ["0123456789"]  # 16 bytes read, no newline yet: 10 handed over, 6 held
    assert tail.read_lines() == ["abcdefghij", "xy"]
    append(log, "z" * 25)
    assert tail.read_lines() == ["z" * 10]
    assert tail.read_lines() == ["z" * 10]
    append(log, "\n")
    assert tail.read_lines() == ["z" * 5]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.touch()
    tail = FileTail(log)
    with log.open("ab") as handle:
        handle.write(b"caf\xe9\n")
    assert tail.read_lines() == ["caf\ufffd"]


def test_bounds_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        FileTail(tmp_path / "x.log", max_read=0)
