"""Engine selection, indexing real photos with real models, and the worker pool."""

from __future__ import annotations

import dataclasses
import os
import struct
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from structlog.testing import capture_logs

from daemon.config import Config, DetectionConfig, EngineConfig
from daemon.indexer import (
    Engine,
    EngineError,
    IndexedPhoto,
    IndexPool,
    PhotoError,
    engine_id_for,
    index_photo,
    load_upright,
    open_engine,
)
from daemon.indexer import engine as engine_mod
from daemon.indexer.crops import CROP_PX, crop_face

DET = DetectionConfig()


# --- selection (no models needed) ---------------------------------------------------------


def test_auto_without_models_is_the_offline_dlib_engine(tmp_path: Path) -> None:
    assert engine_id_for(EngineConfig(models_dir=tmp_path)) == "dlib-hog+dlib-resnet-v1"


@pytest.mark.parametrize(
    ("detector", "embedder", "must_name"),
    [
        ("yunet", "auto", "face_detection_yunet_2023mar.onnx"),
        ("auto", "sface", "face_detection_yunet_2023mar.onnx"),
        ("dlib-hog", "sface", "landmarks"),
    ],
)
def test_impossible_combinations_say_what_is_missing(
    tmp_path: Path, detector: str, embedder: str, must_name: str
) -> None:
    cfg = EngineConfig(detector=detector, embedder=embedder, models_dir=tmp_path)
    with pytest.raises(EngineError) as e:
        engine_id_for(cfg)
    assert must_name in str(e.value)
    assert 'embedder = "dlib"' in str(e.value) or "dlib-hog" in str(e.value)
    with pytest.raises(EngineError):
        open_engine(cfg)


def test_sface_asked_for_but_missing_names_the_file_and_the_ways_out(models_dir: Path) -> None:
    with pytest.raises(EngineError) as e:
        engine_id_for(EngineConfig(embedder="sface", models_dir=models_dir))
    text = str(e.value)
    assert "face_recognition_sface_2021dec.onnx" in text
    assert "facecluster models fetch" in text and 'embedder = "dlib"' in text


def test_auto_picks_by_the_verified_files_present(models_dir: Path, monkeypatch) -> None:
    assert engine_id_for(EngineConfig(models_dir=models_dir)) == "yunet-2023mar+dlib-resnet-v1"
    assert (
        engine_id_for(EngineConfig(detector="dlib-hog", models_dir=models_dir))
        == "dlib-hog+dlib-resnet-v1"
    )
    real = engine_mod.verified_model

    def with_sface(d: Path, key: str) -> Path | None:
        return d / "face_recognition_sface_2021dec.onnx" if key == "sface" else real(d, key)

    monkeypatch.setattr(engine_mod, "verified_model", with_sface)
    real_required = engine_mod.require_model
    monkeypatch.setattr(
        engine_mod, "require_model",
        lambda d, key: with_sface(d, key) if key == "sface" else real_required(d, key),
    )
    # SFace present but unmeasured: `auto` keeps the measured YuNet + dlib (issue 11) ...
    assert engine_id_for(EngineConfig(models_dir=models_dir)) == "yunet-2023mar+dlib-resnet-v1"
    # ... and only an explicit opt-in uses it, with a note for `status`.
    opted = engine_id_for(EngineConfig(embedder="sface", models_dir=models_dir))
    assert opted == "yunet-2023mar+sface-2021dec"
    assert "unmeasured" in (engine_mod.unmeasured_note(opted) or "")
    assert engine_mod.unmeasured_note("yunet-2023mar+dlib-resnet-v1") is None
    assert (
        engine_id_for(EngineConfig(embedder="dlib", models_dir=models_dir))
        == "yunet-2023mar+dlib-resnet-v1"
    )


def test_a_wrong_yunet_file_is_not_used(tmp_path: Path) -> None:
    (tmp_path / "face_detection_yunet_2023mar.onnx").write_bytes(b"not the model")
    assert engine_id_for(EngineConfig(models_dir=tmp_path)) == "dlib-hog+dlib-resnet-v1"


# --- real models on real photos -------------------------------------------------------------


@pytest.fixture(scope="module")
def yunet_engine(tmp_path_factory, yunet_file: Path) -> Engine:
    d = tmp_path_factory.mktemp("models")
    (d / yunet_file.name).write_bytes(yunet_file.read_bytes())
    with capture_logs() as logs:
        engine = open_engine(EngineConfig(models_dir=d))
    chosen = [e for e in logs if e["event"] == "engine_chosen"]
    assert chosen and chosen[0]["engine"] == engine.id and chosen[0]["reason"]
    return engine


def side(box: tuple[float, ...]) -> float:
    return min(box[2], box[3])


def test_yunet_finds_obama_and_biden_side_by_side(yunet_engine: Engine, shared_photos) -> None:
    r = index_photo(shared_photos / "groups/obama_and_biden.jpg", yunet_engine, DET)
    assert r.engine == "yunet-2023mar+dlib-resnet-v1"
    assert (r.width, r.height) == cv2.imread(str(r.path)).shape[1::-1]
    big = sorted(r.faces, key=lambda f: -side(f.box))[:2]
    assert len(big) == 2
    (a, b) = sorted(big, key=lambda f: f.box[0])
    assert a.box[0] + a.box[2] < b.box[0]  # side by side, not overlapping
    assert abs(a.box[1] - b.box[1]) < a.box[3] / 2  # at the same height
    for f in r.faces:
        assert f.score >= DET.min_score and side(f.box) >= DET.min_face_px
        assert len(f.landmarks) == 5
        x, y, w, h = f.box
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in f.landmarks)
        assert f.embedding.dtype == np.float32 and f.embedding.shape == (128,)
        assert abs(float(np.linalg.norm(f.embedding)) - 1) < 1e-5


def test_park_has_no_face(yunet_engine: Engine, shared_photos) -> None:
    r = index_photo(shared_photos / "no-faces/park.jpg", yunet_engine, DET)
    assert r.faces == ()


def test_dlib_embeddings_tell_obama_from_biden(yunet_engine: Engine, shared_photos) -> None:
    def one(path: Path) -> np.ndarray:
        faces = index_photo(path, yunet_engine, DET).faces
        return max(faces, key=lambda f: side(f.box)).embedding

    obama = sorted((shared_photos / "known/obama").glob("*.jpg"))[:2]
    biden = sorted((shared_photos / "known/biden").glob("*.jpg"))[:1]
    o1, o2, b1 = one(obama[0]), one(obama[1]), one(biden[0])
    assert np.linalg.norm(o1 - o2) < np.linalg.norm(o1 - b1)
    assert np.linalg.norm(o1 - o2) < np.linalg.norm(o2 - b1)


def exif_rotated_copy(src: Path, dest: Path) -> None:
    """Store ``src`` rotated 90 degrees with EXIF orientation 6, so it displays as before."""
    stored = cv2.rotate(cv2.imread(str(src)), cv2.ROTATE_90_COUNTERCLOCKWISE)
    ok, buf = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 95])
    tiff = b"II*\0" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)
    app1 = b"Exif\0\0" + tiff
    data = buf.tobytes()
    dest.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])


def assert_upright_crops(faces, upright: np.ndarray) -> None:
    """Each face's crop shows its own place of the upright photo, as a crop of a full
    decode would (album and web pictures are drawn from these instead of the photo)."""
    for face in faces:
        got = cv2.imdecode(np.frombuffer(face.crop, np.uint8), cv2.IMREAD_COLOR).astype(float)
        assert got.shape[0] == got.shape[1] <= CROP_PX
        error = np.abs(got - crop_face(upright, face.box, got.shape[0])).mean()
        assert error < 12
        for other in faces:
            if other is not face:
                assert np.abs(got - crop_face(upright, other.box, got.shape[0])).mean() > 2 * error


def test_exif_rotated_copy_gives_the_same_upright_faces(
    yunet_engine: Engine, shared_photos, tmp_path: Path
) -> None:
    src = shared_photos / "groups/obama_and_biden.jpg"
    dest = tmp_path / "rotated.jpg"
    exif_rotated_copy(src, dest)
    a = index_photo(src, yunet_engine, DET)
    b = index_photo(dest, yunet_engine, DET)
    assert (b.width, b.height) == (a.width, a.height)
    assert len(b.faces) == len(a.faces) >= 2
    assert_upright_crops(b.faces, load_upright(src, 10**8))
    for fa in a.faces:
        fb = min(b.faces, key=lambda f: abs(f.box[0] - fa.box[0]) + abs(f.box[1] - fa.box[1]))
        assert np.abs(np.subtract(fa.box, fb.box)).max() < 0.1 * fa.box[3]
        assert float(fa.embedding @ fb.embedding) > 0.9  # same face, same vector


def test_large_jpeg_is_detected_reduced_and_mapped_back(
    yunet_engine: Engine, shared_photos, tmp_path: Path
) -> None:
    src = cv2.imread(str(shared_photos / "known/obama/obama.jpg"))
    small = tmp_path / "small.jpg"
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(small), src, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(big), cv2.resize(src, None, fx=3, fy=3), [cv2.IMWRITE_JPEG_QUALITY, 95])
    a = index_photo(small, yunet_engine, dataclasses.replace(DET, max_side=640))
    b = index_photo(big, yunet_engine, dataclasses.replace(DET, max_side=640))
    assert (b.width, b.height) == (3 * a.width, 3 * a.height)
    assert len(a.faces) == len(b.faces) == 1
    assert np.abs(np.multiply(a.faces[0].box, 3) - b.faces[0].box).max() < 0.05 * b.faces[0].box[3]
    assert float(a.faces[0].embedding @ b.faces[0].embedding) > 0.9


def test_small_face_in_a_large_jpeg_is_embedded_from_a_sharper_decode(
    yunet_engine: Engine, shared_photos, tmp_path: Path
) -> None:
    src = cv2.imread(str(shared_photos / "known/obama/obama.jpg"))
    h, w = src.shape[:2]
    # The face keeps its size while the photo grows 4x: at the 1/4 DCT decode it would be
    # upscaled about 2x into dlib's chip, so the indexer must decode sharper for it.
    canvas = cv2.copyMakeBorder(src, 0, 3 * h, 0, 3 * w, cv2.BORDER_CONSTANT, value=(90, 90, 90))
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
    det = dataclasses.replace(DET, max_side=640)
    alone = index_photo(shared_photos / "known/obama/obama.jpg", yunet_engine, DET)
    with capture_logs() as logs:
        r = index_photo(big, yunet_engine, det)
    (event,) = [e for e in logs if e["event"] == "photo_indexed"]
    assert len(r.faces) == 1
    in_chip = side(r.faces[0].box) / event["reduction"] * engine_mod.UPSCALE_LIMIT
    assert event["reduction"] < 4
    assert in_chip >= yunet_engine.embedder.face_px
    assert float(alone.faces[0].embedding @ r.faces[0].embedding) > 0.95


def test_min_face_px_is_in_full_resolution_pixels(yunet_engine: Engine, shared_photos) -> None:
    path = shared_photos / "groups/obama_and_biden.jpg"
    every = index_photo(path, yunet_engine, dataclasses.replace(DET, min_face_px=0))
    limit = sorted(side(f.box) for f in every.faces)[-2]  # keeps only the two largest
    some = index_photo(path, yunet_engine, dataclasses.replace(DET, min_face_px=int(limit)))
    assert len(some.faces) == 2 < len(every.faces)


def test_dlib_hog_engine_finds_a_face_without_landmarks(tmp_path: Path, shared_photos) -> None:
    engine = open_engine(EngineConfig(detector="dlib-hog", models_dir=tmp_path))
    r = index_photo(shared_photos / "known/obama/obama.jpg", engine, DET)
    assert r.engine == "dlib-hog+dlib-resnet-v1"
    assert len(r.faces) == 1 and r.faces[0].landmarks == ()
    assert abs(float(np.linalg.norm(r.faces[0].embedding)) - 1) < 1e-5


def test_broken_photo_raises_photo_error(yunet_engine: Engine, tmp_path: Path) -> None:
    p = tmp_path / "x.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(PhotoError):
        index_photo(p, yunet_engine, DET)


# --- the pool -----------------------------------------------------------------------------


def pool_config(models_dir: Path, workers: int) -> Config:
    return Config(workers=workers, engine=EngineConfig(models_dir=models_dir))


def as_dict(results) -> dict[Path, IndexedPhoto | PhotoError]:
    return dict(results)


def test_pool_matches_in_process(models_dir: Path, shared_photos, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    paths = [
        shared_photos / "groups/obama_and_biden.jpg",
        shared_photos / "no-faces/park.jpg",
        *sorted((shared_photos / "known/biden").glob("*.jpg"))[:2],
        broken,
    ]
    with IndexPool(pool_config(models_dir, 1)) as pool:
        alone = as_dict(pool.imap(iter(paths)))
    with IndexPool(pool_config(models_dir, 2)) as pool:
        assert pool.engine_id == "yunet-2023mar+dlib-resnet-v1"
        together = as_dict(pool.imap(iter(paths)))
        again = as_dict(pool.imap(paths[:1]))  # the pool is reusable
    assert set(together) == set(alone) == set(paths)
    assert isinstance(together[broken], PhotoError) and isinstance(alone[broken], PhotoError)
    for p in paths[:-1]:
        a, b = alone[p], together[p]
        assert isinstance(a, IndexedPhoto) and isinstance(b, IndexedPhoto)
        assert [f.box for f in a.faces] == [f.box for f in b.faces]
        for fa, fb in zip(a.faces, b.faces, strict=True):
            assert np.allclose(fa.embedding, fb.embedding, atol=1e-5)
    assert len(again[paths[0]].faces) == len(alone[paths[0]].faces)


def test_pool_started_early_loads_while_the_caller_works(models_dir: Path, shared_photos) -> None:
    pool = IndexPool(pool_config(models_dir, 2)).start()
    pids = [w.process.pid for w in pool._pool]
    # start() returns at once (loading takes a good part of a second)...
    assert len(pids) == 2 and not any(w.ready for w in pool._pool)
    assert pool.start() is pool and [w.process.pid for w in pool._pool] == pids
    park = shared_photos / "no-faces/park.jpg"
    given: Counter[int] = Counter()
    give = pool._give

    def counted(w, source):  # noqa: ANN001, ANN202 - the pool's own hand-out, counted
        handed = give(w, source)
        if handed:
            given[w.process.pid] += 1
        return handed

    def photos():
        # Photos keep coming until the late worker has loaded, however slow the machine
        # (the pool's start timeout bounds the wait), then a few more for it to take.
        while not all(w.ready for w in pool._pool):
            yield park
        yield from [park] * 3

    pool._give = counted
    with pool:  # ...entering waits for one worker only, and keeps the ones started
        assert pool.engine_id == "yunet-2023mar+dlib-resnet-v1"
        assert [w.process.pid for w in pool._pool] == pids
        got = list(pool.imap(photos()))
        assert len(got) >= 3 and all(isinstance(r, IndexedPhoto) for _, r in got)
        assert set(given) == set(pids)  # the second joined once loaded, and took photos
    assert not pool._pool
    with IndexPool(pool_config(models_dir, 2)) as pool:
        pool.wait_loaded()
        assert all(w.ready for w in pool._pool)


def test_pool_survives_a_dead_or_hung_worker(models_dir: Path, shared_photos, tmp_path) -> None:
    # Opening a FIFO with no writer blocks forever: a stand-in for a hung native call.
    fifo = tmp_path / "stuck.jpg"
    os.mkfifo(fifo)
    park = shared_photos / "no-faces/park.jpg"
    with IndexPool(pool_config(models_dir, 2), task_timeout=5) as pool:
        got = as_dict(pool.imap([fifo, park]))
        assert isinstance(got[fifo], PhotoError) and "took over" in got[fifo].reason
        assert isinstance(got[park], IndexedPhoto)
        # A worker killed outright (as by a segfault) costs only its photo.
        results = pool.imap([fifo, park, park])
        first = next(results)
        stuck = next(w for w in pool._pool if w.path == fifo)
        stuck.process.kill()
        rest = [first, *results]
        errors = [r for p, r in rest if p == fifo]
        assert len(errors) == 1 and "crashed" in errors[0].reason
        assert sum(isinstance(r, IndexedPhoto) for _, r in rest) == 2
        assert len(pool._pool) == 2 and all(w.process.is_alive() for w in pool._pool)


def test_pool_refuses_to_start_with_an_impossible_engine(tmp_path: Path) -> None:
    cfg = Config(workers=2, engine=EngineConfig(detector="yunet", models_dir=tmp_path))
    with pytest.raises(EngineError), IndexPool(cfg):
        pass



def test_a_worker_leaves_at_once_but_keeps_its_last_output() -> None:
    # The workers skip the interpreter's teardown (~0.18 s of CPU each at the end of a
    # scan); what they printed last must still come out, and the exit code is 0.
    import subprocess
    import sys

    code = (
        "import sys\nfrom daemon.log import leave_now\n"
        "sys.stdout.write('last line')\nleave_now()"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, env=env, timeout=60)
    assert (done.returncode, done.stdout) == (0, "last line")
