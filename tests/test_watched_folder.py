"""A watched folder (``watch=True``): a drop box that images arrive in, each classified once,
with its file named in the prediction; and a service on one that is idle, not stalled."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.media import make_jpeg
from support.notify import NotifyListener, listener
from support.privileges import only_for_root_with_setpriv, rerun_without_root_override

from edge_sdk.classifier import Classifier
from edge_sdk.errors import ConfigError, SourceError
from edge_sdk.pipeline import Pipeline
from edge_sdk.service.notify import SystemdNotifier
from edge_sdk.service.watchdog import WatchdogSink
from edge_sdk.sources import open_source
from edge_sdk.sources.images import WATCH_POLL_S, ImageSource
from edge_sdk.types import Frame, Prediction

__all__ = ["listener"]


def drop(folder: Path, name: str, mtime: float | None = None) -> Path:
    """Put an image in `folder` the way an upload should: written aside, then renamed in."""
    staging = folder.parent / f"{folder.name}-staging"
    staging.mkdir(exist_ok=True)
    aside = make_jpeg(staging / name, (160, 120))
    if mtime is not None:
        os.utime(aside, (mtime, mtime))
    final = folder / name
    aside.rename(final)
    return final


def read_in_background(source: ImageSource, count: int) -> tuple[list[Frame], threading.Thread]:
    frames: list[Frame] = []

    def run() -> None:
        while len(frames) < count:
            frame = source.read()
            if frame is None:
                return
            frames.append(frame)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return frames, thread


def test_images_dropped_in_later_are_read_once_each_oldest_first(tmp_path: Path) -> None:
    make_jpeg(tmp_path / "b-first.jpg", (160, 120))
    with open_source(str(tmp_path), watch=True) as source:
        assert isinstance(source, ImageSource) and not source.live
        frames, thread = read_in_background(source, 4)
        deadline = time.monotonic() + 5
        while source.waiting is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [f.file for f in frames] == [str(tmp_path / "b-first.jpg")]
        assert source.waiting is not None  # the folder is read; it waits for more
        now = time.time()
        drop(tmp_path, "z-older.jpg", mtime=now - 60)  # by time, not by name
        drop(tmp_path, "a-newer.jpg", mtime=now - 30)
        (tmp_path / "notes.txt").write_text("not an image")
        thread.join(5 * WATCH_POLL_S)
        assert thread.is_alive()  # three frames; the fourth never comes
        assert [Path(f.file).name for f in frames] == ["b-first.jpg", "z-older.jpg", "a-newer.jpg"]
        assert [f.index for f in frames] == [0, 1, 2]
        # A file taken away and put back is new again.
        os.remove(tmp_path / "z-older.jpg")
        time.sleep(3 * WATCH_POLL_S)
        drop(tmp_path, "z-older.jpg")
        thread.join(5)
        assert not thread.is_alive() and Path(frames[3].file).name == "z-older.jpg"
    assert source.read() is None  # closed


def test_close_wakes_a_read_waiting_for_images(tmp_path: Path) -> None:
    source = ImageSource(str(tmp_path), watch=True)
    assert source.size == (0, 0)  # nothing there yet
    frames, thread = read_in_background(source, 1)
    time.sleep(2 * WATCH_POLL_S)
    started = time.monotonic()
    source.close()
    thread.join(2)
    assert not thread.is_alive() and frames == []
    assert time.monotonic() - started < 0.2


def test_a_file_that_does_not_decode_is_tried_again_once_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = make_jpeg(tmp_path.parent / f"{tmp_path.name}-whole.jpg", (160, 120)).read_bytes()
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(full[: len(full) // 3])  # an upload that paused half-way
    with caplog.at_level(logging.WARNING, "edge_sdk.sources"), \
            ImageSource(str(tmp_path), watch=True) as source:
        frames, thread = read_in_background(source, 1)
        deadline = time.monotonic() + 5
        while "tried again if it changes" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"skipping {upload}: it does not decode" in caplog.text
        time.sleep(3 * WATCH_POLL_S)
        assert frames == []  # not retried while it stays the same
        upload.write_bytes(full)  # the upload ends
        thread.join(5)
        assert [f.file for f in frames] == [str(upload)] and frames[0].image.shape == (120, 160, 3)


def test_a_watched_glob_may_match_nothing_yet(tmp_path: Path) -> None:
    with ImageSource(str(tmp_path / "cam-*.jpg"), watch=True) as source:
        frames, thread = read_in_background(source, 1)
        drop(tmp_path, "other.jpg")
        drop(tmp_path, "cam-1.jpg")
        thread.join(5)
        assert [Path(f.file).name for f in frames] == ["cam-1.jpg"]


def test_watch_is_refused_where_it_cannot_work(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "one.jpg", (160, 120))
    with pytest.raises(ConfigError, match=r"watch needs a folder or a glob of images, not the file"):
        open_source(str(photo), watch=True)
    with pytest.raises(ConfigError, match="watch and loop exclude each other"):
        open_source(str(tmp_path), watch=True, loop=True)
    with pytest.raises(SourceError, match=r"no such folder: .*missing; create it or fix the path"):
        open_source(str(tmp_path / "missing"), watch=True)


def test_a_watched_folder_that_goes_away_ends_the_source_with_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    with ImageSource(str(folder), watch=True) as source:
        time.sleep(0.05)
        shutil.rmtree(folder)
        with pytest.raises(SourceError, match=r"the folder .*inbox is gone; check the disk or the path"):
            source.read()


def test_predictions_name_their_file_and_a_pipeline_classifies_each_drop(
    tmp_path: Path, classifier: Classifier, photos: Path
) -> None:
    seen: list[Prediction] = []
    got = threading.Event()

    def on_prediction(prediction: Prediction) -> None:
        seen.append(prediction)
        if len(seen) == 2:
            got.set()

    with Pipeline(str(tmp_path), classifier, source_options={"watch": True},
                  on_prediction=on_prediction, iterate=False) as pipeline:
        time.sleep(2 * WATCH_POLL_S)
        assert pipeline.source_waiting is not None
        shutil.copy(photos / "chelsea.png", tmp_path / ".cat.tmp")
        os.rename(tmp_path / ".cat.tmp", tmp_path / "cat.png")
        shutil.copy(photos / "coffee.png", tmp_path / ".coffee.tmp")
        os.rename(tmp_path / ".coffee.tmp", tmp_path / "coffee.png")
        assert got.wait(10)
    by_file = {Path(p.file).name: p for p in seen}
    assert set(by_file) == {"cat.png", "coffee.png"}
    assert by_file["cat.png"].top[0].index in (281, 282, 285)
    assert by_file["coffee.png"].top[0].index == 967
    data = by_file["cat.png"].to_dict()
    assert data["file"] == str(tmp_path / "cat.png")
    assert Prediction.from_dict(data).file == data["file"]
    assert "file" not in Prediction(0, 0, ()).to_dict()  # cameras' predictions are as they were


def test_the_service_watchdog_takes_an_idle_watched_folder_for_healthy(
    tmp_path: Path, classifier: Classifier, listener: NotifyListener
) -> None:
    """Without a single image, a watched folder makes the service READY and keeps the pings
    going; once the source stops (here: the run ends), the pings stop."""
    heartbeat = WatchdogSink(SystemdNotifier(listener.path), watchdog=0.8, status_every=0.2)
    pipeline = Pipeline(str(tmp_path), classifier, [heartbeat], source_options={"watch": True})
    try:
        pipeline.start()
        assert listener.wait_for(lambda f: f.count("WATCHDOG=1") >= 3, 5)
        fields = listener.fields()
        assert fields[0] == "READY=1" and fields[1] == "STATUS=waiting for input"
        assert any("waiting for input" in f and "predictions/s" in f for f in fields)
        assert heartbeat.count == 0
    finally:
        pipeline.stop()
    pings = listener.times("WATCHDOG=1")
    time.sleep(1.0)
    assert listener.times("WATCHDOG=1") == pings


def read_until(source: ImageSource, count: int, timeout: float = 10.0) -> list[Frame]:
    frames, thread = read_in_background(source, count)
    thread.join(timeout)
    return frames


def test_a_folder_with_glob_characters_in_its_name_is_watched_as_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cam[1]"
    folder.mkdir()
    make_jpeg(folder / "first.jpg", (160, 120))
    with ImageSource(str(folder), watch=True) as source:
        assert [Path(f.file).name for f in read_until(source, 1)] == ["first.jpg"]


def test_an_image_replaced_under_the_same_name_is_read_again(tmp_path: Path, photos: Path) -> None:
    snapshot = tmp_path / "snapshot.png"
    shutil.copy(photos / "chelsea.png", snapshot)
    with ImageSource(str(tmp_path), watch=True) as source:
        frames, thread = read_in_background(source, 3)
        deadline = time.monotonic() + 5
        while not frames and time.monotonic() < deadline:
            time.sleep(0.02)
        shutil.copy(photos / "coffee.png", snapshot)  # a camera uploading over its last one
        deadline = time.monotonic() + 5
        while len(frames) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        staged = tmp_path.parent / f"{tmp_path.name}-next.png"
        shutil.copy(photos / "astronaut.png", staged)
        staged.replace(snapshot)  # mv -f over it
        thread.join(5)
    assert [f.file for f in frames] == [str(snapshot)] * 3
    shapes = [f.image.shape for f in frames]
    assert shapes[0] != shapes[1] or not np.array_equal(frames[0].image, frames[1].image)
    assert not np.array_equal(frames[1].image, frames[2].image)


def test_an_unreadable_image_is_read_once_its_permission_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    locked = make_jpeg(tmp_path / "locked.jpg", (160, 120))
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("root reads a chmod-000 file (see test_the_permission_test_also_runs_for_root)")
    with caplog.at_level(logging.WARNING, "edge_sdk.sources"), \
            ImageSource(str(tmp_path), watch=True) as source:
        frames, thread = read_in_background(source, 1)
        deadline = time.monotonic() + 5
        while "permission denied (it is tried again when it changes)" not in caplog.text \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "tried again when it changes" in caplog.text and frames == []
        locked.chmod(0o644)
        thread.join(5)
    assert [f.file for f in frames] == [str(locked)]


@only_for_root_with_setpriv
def test_the_permission_test_also_runs_for_root() -> None:
    rerun_without_root_override(__file__, "permission_is_fixed")


def test_a_glob_needs_its_folder_and_ends_when_it_goes(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no such folder: .*nope; create it or fix the path"):
        ImageSource(str(tmp_path / "nope" / "*.jpg"), watch=True)
    folder = tmp_path / "inbox"
    folder.mkdir()
    with ImageSource(str(folder / "*.jpg"), watch=True) as source:
        shutil.rmtree(folder)
        with pytest.raises(SourceError, match=r"the folder .*inbox is gone"):
            source.read()


def test_a_service_on_a_watched_folder_without_keep_all_says_it_thins_bursts(
    tmp_path: Path, classifier: Classifier, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "edge_sdk.pipeline"), \
            Pipeline(str(tmp_path), classifier, source_options={"watch": True}, keep_all=False,
                     iterate=False):
        pass
    assert "a burst of images is thinned to keep up; to classify every image, keep all" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "edge_sdk.pipeline"), \
            Pipeline(str(tmp_path), classifier, source_options={"watch": True}, iterate=False):
        pass
    assert "thinned" not in caplog.text  # no keep_all given: a folder's images are all taken


def test_a_folder_looked_at_seldom_is_idle_until_its_next_look_is_overdue() -> None:
    """A huge folder is looked at only every few seconds, which may exceed stall_after: what
    counts is whether the next look is overdue."""

    class Waiting:  # what WatchdogSink reads of a Pipeline
        source_waiting: float | None = None

    heartbeat = WatchdogSink(SystemdNotifier(""), watchdog=1.0, stall_after=0.2)
    try:
        pipeline = Waiting()
        heartbeat.attach(pipeline)
        assert not heartbeat._source_idle()
        pipeline.source_waiting = time.monotonic() + 4.0  # next look in 4 s
        assert heartbeat._source_idle()
        pipeline.source_waiting = time.monotonic() - 0.5  # 0.5 s overdue: a stuck look
        assert not heartbeat._source_idle()
    finally:
        heartbeat.close()


def test_a_snapshot_replaced_faster_than_the_looks_is_still_read(tmp_path: Path, photos: Path) -> None:
    """A camera renaming a new snapshot.png over the old one every 0.3 s: no look finds it
    unchanged, yet it is read while the uploads go on (every WATCH_MAX_WAIT_S at the latest,
    at once when the inode shows it was replaced whole); before, only after they stopped."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    pictures = [photos / name for name in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.png")]
    with ImageSource(str(inbox), watch=True) as source:
        frames, _ = read_in_background(source, 100)
        end = time.monotonic() + 5.0
        n = 0
        while time.monotonic() < end:
            staged = tmp_path / f"next{n % 2}.png"
            shutil.copy(pictures[n % len(pictures)], staged)
            staged.replace(inbox / "snapshot.png")
            n += 1
            time.sleep(0.3)
        uploading = len(frames)
    assert uploading >= 2, f"{uploading} snapshots read during {n} uploads"
    assert {f.file for f in frames} == {str(inbox / "snapshot.png")}


def test_links_and_access_times_do_not_make_an_image_new(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    image = make_jpeg(inbox / "a.jpg", (160, 120))
    with ImageSource(str(inbox), watch=True) as source:
        frames, thread = read_in_background(source, 2)
        time.sleep(2 * WATCH_POLL_S)
        os.link(image, tmp_path / "backup-of-a.jpg")  # a backup by hard links (cp -al)
        os.utime(image, ns=(time.time_ns(), image.stat().st_mtime_ns))  # touch -a
        time.sleep(4 * WATCH_POLL_S)
        assert [Path(f.file).name for f in frames] == ["a.jpg"]
        os.link(image, inbox / "b.jpg")  # a second name in the folder is an image of its own
        thread.join(5)
    assert [Path(f.file).name for f in frames] == ["a.jpg", "b.jpg"]


def test_each_bad_version_of_an_image_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    whole = make_jpeg(tmp_path / "whole.jpg", (160, 120)).read_bytes()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    upload = inbox / "snap.jpg"
    with caplog.at_level(logging.WARNING, "edge_sdk.sources"), \
            ImageSource(str(inbox), watch=True) as source:
        frames, thread = read_in_background(source, 2)
        for version in (whole[:3000], whole, whole[:2000]):
            upload.write_bytes(version)
            time.sleep(4 * WATCH_POLL_S)
        thread.join(1)
    assert [f.file for f in frames] == [str(upload)]
    assert caplog.text.count(f"skipping {upload}: it does not decode") == 2
