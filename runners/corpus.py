"""Corpora as byte-level token arrays, with a frozen embedded default.

The default corpus is the CPython standard library's own source, frozen once into
`runners/data/stdlib.u8.xz` so that every run on every machine trains on the same bytes;
its sha256 is recorded on each run. Tokens are bytes (vocab 256): no tokenizer download,
a small embedding, so N is dominated by the blocks.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from runners.errors import RunnerError

VOCAB_SIZE = 256
DEFAULT_CORPUS = "default"
EMBEDDED_PATH = Path(__file__).parent / "data" / "stdlib.u8.xz"
EMBEDDED_SHA256 = "775f030ae338e08384b51e1e7fee5ce4534f23d9016fcaa6c16ae51d4ee00453"
VALIDATION_BLOCK = 1 << 16  # bytes per split block
VALIDATION_EVERY = 50  # every 50th block is held out (2%)
# The corpus reader installs and loads no DuckDB extension (one could be fetched from the
# network for a file that is not Parquet).
NO_EXTENSIONS: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
TEXT_SUFFIXES = {".txt", ".md", ".py", ".rst", ".json", ".csv", ".html", ".tex", ".c", ".h"}


@dataclass(frozen=True)
class Corpus:
    """A token stream split into train and validation parts."""

    name: str
    sha256: str
    train: np.ndarray
    val: np.ndarray

    @property
    def n_tokens(self) -> int:
        return len(self.train) + len(self.val)


def encode(text: str) -> np.ndarray:
    """Byte-level tokenisation: UTF-8 bytes are the tokens."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def decode(tokens: np.ndarray) -> str:
    return bytes(np.asarray(tokens, dtype=np.uint8)).decode("utf-8", errors="replace")


def split(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: every VALIDATION_EVERY-th block of 64 KiB is validation.

    Interleaved blocks keep both parts representative of the whole corpus (a tail split of
    a sorted file list would validate on different modules than it trains on).
    """
    n_blocks = -(-len(tokens) // VALIDATION_BLOCK)
    if n_blocks < 2:
        cut = max(1, len(tokens) // 10)
        return tokens[:-cut], tokens[-cut:]
    is_val = (np.arange(n_blocks) % VALIDATION_EVERY) == VALIDATION_EVERY // 2
    if not is_val.any():
        is_val[-1] = True
    block_of = np.arange(len(tokens)) // VALIDATION_BLOCK
    mask = is_val[block_of]
    return tokens[~mask], tokens[mask]


def freeze_stdlib(out: Path = EMBEDDED_PATH, max_bytes: int = 12_000_000) -> str:
    """Build the embedded corpus from this interpreter's standard library (run once, committed).

    Files are taken in sorted path order, test suites excluded, each prefixed by its path.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
    parts: list[bytes] = []
    size = 0
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        data = f"# file: {path.relative_to(root)}\n".encode() + path.read_bytes() + b"\n"
        if size + len(data) > max_bytes:
            break
        parts.append(data)
        size += len(data)
    blob = b"".join(parts)
    out.write_bytes(lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME))
    return hashlib.sha256(blob).hexdigest()


def _read_text_file(path: Path) -> bytes:
    return path.read_bytes()


def _read_jsonl(path: Path) -> bytes:
    docs = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}: line {lineno}"
            try:
                text = json.loads(line)["text"]
            except UnicodeDecodeError as exc:
                raise RunnerError(f"{where} is not UTF-8 text") from exc
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise RunnerError(f"{where} is not a JSON object with a 'text' field") from exc
            if not isinstance(text, str):
                raise RunnerError(f"{where}: 'text' is {json.dumps(text)[:40]}, not a string")
            try:
                docs.append(text.encode("utf-8"))
            except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800"
                raise RunnerError(f"{where}: 'text' holds a lone surrogate, not text") from exc
    return b"\n".join(docs)


def _read_parquet(path: Path) -> bytes:
    import duckdb  # runners reads user Parquet through DuckDB; imported only when asked

    try:
        con = duckdb.connect(":memory:", config=NO_EXTENSIONS)
        rows = con.execute("SELECT text FROM read_parquet(?)", [str(path)]).fetchall()
    except duckdb.Error as exc:
        raise RunnerError(f"{path}: cannot read a 'text' column from this Parquet file") from exc
    return "\n".join(str(r[0]) for r in rows if r[0] is not None).encode("utf-8")


def _read_folder(path: Path) -> bytes:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    if not files:
        raise RunnerError(
            f"{path}: folder holds no text files ({', '.join(sorted(TEXT_SUFFIXES))})"
        )
    return b"\n".join(p.read_bytes() for p in files)


def _read_user_corpus(path: Path) -> bytes:
    if not path.exists():
        raise RunnerError(f"corpus not found: {path}")
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():  # a FIFO would block, /dev/zero never ends
        raise RunnerError(f"corpus {path} is not a regular file or a folder")
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    return _read_text_file(path)


def load_corpus(spec: str = DEFAULT_CORPUS) -> Corpus:
    """Load the default corpus or a user corpus (text file, folder, .jsonl, .parquet)."""
    if not spec.strip():  # Path("") is the working directory: every text file under it
        raise RunnerError("--corpus is empty: give 'default', a text file, a folder, .jsonl")
    return _load(spec)  # one cache key however the spec is passed


@lru_cache(maxsize=4)
def _load(spec: str) -> Corpus:
    if spec == DEFAULT_CORPUS:
        blob = lzma.decompress(EMBEDDED_PATH.read_bytes())
        name = DEFAULT_CORPUS
        if hashlib.sha256(blob).hexdigest() != EMBEDDED_SHA256:
            raise RunnerError(f"the embedded corpus {EMBEDDED_PATH} is damaged: reinstall scaling")
    else:
        path = Path(spec).expanduser().resolve()
        blob = _read_user_corpus(path)
        name = str(path)
    tokens = np.frombuffer(blob, dtype=np.uint8)
    if len(tokens) < 4096:
        raise RunnerError(f"corpus {name} is too small: {len(tokens)} tokens (need >= 4096)")
    train, val = split(tokens)
    return Corpus(name, hashlib.sha256(blob).hexdigest(), train, val)
