"""Benchmark: deployer's source digest vs `sha256sum` over the same build context.

Generates a deterministic context of about 5,000 files / 200 MB (mostly small source-like files,
a few large binaries) in a temporary directory, warms the page cache, then times the best of
three runs of each:

  deployer   deployer.digest.tree_digest (what every `plan` pays per function)
  sha256sum  `xargs -0 sha256sum` over a NUL-separated file list (one process, no parallelism)

and prints both times and the throughput ratio sha256sum_time / deployer_time (target >= 0.5).
The temporary directory is removed at the end. Run: python bench/hash_context.py [--files N] [--mb M]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployer.digest import tree_digest  # noqa: E402


def generate(root: Path, files: int, total_mb: int, seed: int = 1) -> tuple[list[Path], int]:
    """Write `files` files totalling about `total_mb` MB: 1% large (sharing half the bytes), the
    rest small (0.5-48 KB). Content is sliced from a random pool, so it is deterministic."""
    rng = random.Random(seed)
    pool = rng.randbytes(8 << 20)
    large_count = max(1, files // 100)
    total = total_mb << 20
    large_size = (total // 2) // large_count
    small_budget = total - large_size * large_count
    small_count = files - large_count
    mean_small = small_budget / small_count
    paths: list[Path] = []
    written = 0
    for i in range(files):
        d = root / f"pkg{i % 50:02d}" / f"sub{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        if i < large_count:
            size, path = large_size, d / f"blob{i}.bin"
        else:
            size = max(1, int(rng.uniform(0.01, 1.99) * mean_small))
            path = d / f"file{i}.go"
        with open(path, "wb") as f:
            left = size
            while left:
                start = rng.randrange(0, len(pool) - 1)
                chunk = pool[start : start + min(left, len(pool) - start)]
                f.write(chunk)
                left -= len(chunk)
        if i % 97 == 0:
            os.chmod(path, 0o755)
        paths.append(path)
        written += size
    return paths, written


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("sha256sum"):
        print("sha256sum not found", file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="deployer-bench-"))
    try:
        root = tmp / "ctx"
        t0 = time.perf_counter()
        paths, size = generate(root, args.files, args.mb)
        print(f"context: {len(paths)} files, {size / (1 << 20):.0f} MB, generated in {time.perf_counter() - t0:.1f}s")
        listing = tmp / "files.lst"
        listing.write_bytes(b"\0".join(os.fsencode(p.relative_to(root)) for p in paths) + b"\0")

        def run_sha256sum() -> None:
            with open(listing, "rb") as lst:
                subprocess.run(["xargs", "-0", "sha256sum"], stdin=lst, cwd=root, check=True, stdout=subprocess.DEVNULL)

        run_sha256sum()  # warm the page cache for both contenders
        tree_digest(root)
        deployer_time = best_of(args.runs, lambda: tree_digest(root))
        sha_time = best_of(args.runs, run_sha256sum)
        mb = size / (1 << 20)
        print(f"deployer digest: {deployer_time:.3f}s ({mb / deployer_time:.0f} MB/s, {os.cpu_count()} CPUs)")
        print(f"sha256sum:       {sha_time:.3f}s ({mb / sha_time:.0f} MB/s)")
        ratio = sha_time / deployer_time
        print(f"throughput ratio: {ratio:.2f} (sha256sum_time / deployer_time, target >= 0.5)")
        return 0 if ratio >= 0.5 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
