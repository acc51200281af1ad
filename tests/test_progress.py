"""The terminal progress line, driven by a fake clock and a fake terminal."""

from __future__ import annotations

import io

import pytest

from daemon.cli.progress import Progress, format_duration, format_line


class FakeTTY(io.StringIO):
    """A stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _frames(stream: io.StringIO) -> list[str]:
    """The successive lines drawn, without control sequences."""
    text = stream.getvalue().replace("\x1b[K", "")
    return [f for f in text.replace("\n", "\r").split("\r") if f]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (42.4, "42s"), (59.6, "1m00s"), (185, "3m05s"), (7620, "2h07m"), (-1, "?")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_line_known_total() -> None:
    line = format_line(50, 200, 10.0, fields={"faces": 87})
    assert line.startswith("50/200  [#####---------------]   25.0%")
    assert "5.0 photos/s" in line
    assert "ETA 30s" in line  # 150 left at 5 per second
    assert line.endswith("faces=87")


def test_format_line_unknown_total_and_no_time_yet() -> None:
    line = format_line(7, None, 0.0)
    assert line.startswith("7 photos")
    assert "- photos/s" in line
    assert "ETA" not in line


def test_format_line_done_shows_elapsed_not_eta() -> None:
    line = format_line(10, 10, 65.0)
    assert "100.0%" in line
    assert "ETA" not in line
    assert "1m05s" in line


def test_format_line_fits_the_terminal() -> None:
    line = format_line(1, 10, 1.0, fields={"path": "x" * 500}, width=60)
    assert len(line) == 59
    # On a narrow terminal the bar goes first, so the numbers and fields stay visible.
    line = format_line(1, 10, 1.0, fields={"faces": 3, "errors": 0}, width=60)
    assert "[" not in line
    assert line.startswith("1/10  ") and line.endswith("errors=0")


def test_nothing_drawn_when_not_a_terminal() -> None:
    stream = io.StringIO()  # isatty() is False
    bar = Progress(5, stream=stream)
    for _ in range(5):
        bar.update()
    bar.close()
    assert stream.getvalue() == ""
    assert bar.count == 5


def test_enabled_can_be_forced_either_way() -> None:
    tty = FakeTTY()
    with Progress(3, stream=tty, enabled=False) as bar:
        bar.update()
    assert tty.getvalue() == ""
    plain = io.StringIO()
    with Progress(3, stream=plain, enabled=True) as bar:
        bar.update()
    assert plain.getvalue().endswith("\n")


def test_redraws_are_throttled() -> None:
    clock, tty = Clock(), FakeTTY()
    bar = Progress(1000, stream=tty, clock=clock)
    for _ in range(100):  # all within the same instant: one draw only
        bar.update()
    assert len(_frames(tty)) == 1
    clock.now += 0.05
    bar.update()
    assert len(_frames(tty)) == 1
    clock.now += 0.06
    bar.update()
    assert len(_frames(tty)) == 2
    # Ten seconds of updates every millisecond draw about 100 frames, not 10,000.
    for _ in range(10_000):
        clock.now += 0.001
        bar.update()
    assert 95 <= len(_frames(tty)) <= 105


def test_frames_show_rate_eta_and_fields() -> None:
    clock, tty = Clock(), FakeTTY()
    bar = Progress(200, stream=tty, clock=clock)
    clock.now += 10
    bar.update(50, faces=87, errors=0)
    frame = _frames(tty)[-1]
    assert frame.startswith("50/200")
    assert "5.0 photos/s" in frame
    assert "ETA 30s" in frame
    assert "faces=87" in frame and "errors=0" in frame
    assert tty.getvalue().startswith("\r")  # redrawn in place


def test_close_draws_final_state_once() -> None:
    clock, tty = Clock(), FakeTTY()
    bar = Progress(3, stream=tty, clock=clock)
    bar.update()
    bar.update()
    bar.update()  # throttled: the screen still shows an earlier count
    assert not _frames(tty)[-1].startswith("3/3")
    bar.close()
    bar.close()
    assert _frames(tty)[-1].startswith("3/3")
    assert tty.getvalue().count("\n") == 1
    before = tty.getvalue()
    bar.update()  # after close: counted, not drawn
    assert tty.getvalue() == before


def test_clear_erases_and_next_update_redraws() -> None:
    clock, tty = Clock(), FakeTTY()
    bar = Progress(None, stream=tty, clock=clock)
    bar.update()
    bar.clear()
    assert tty.getvalue().endswith("\r\x1b[K")
    bar.update()  # same instant, but the line was cleared: draw again
    assert _frames(tty)[-1].startswith("2 photos")
