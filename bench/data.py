"""`osmo data` against s5cmd and `aws s3 cp --recursive`, side by side, on SeaweedFS (loopback).

Shapes: (a) many small files (10,000 x 10 KB), (b) few large files (2 x 1 GB); both directions.
Every tool runs as its command-line program (start-up included), with its default settings,
against the same SeaweedFS; downloads of a shape all read the same objects.

    python bench/data.py            # full shapes
    python bench/data.py --quick    # 2,000 x 10 KB and 2 x 128 MB, well under two minutes

Starts SeaweedFS with scripts/services.sh (or shares the running one, holding a lease) and
releases it at the end. Prints a table, writes
bench/results/data[-quick].json, and ends with one JSON line: small_files_ratio and
large_files_ratio are osmo's throughput divided by the fastest other tool's, the lower of the
upload and download ratios of that shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MiB = 1024 * 1024


def sh(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    """Run ``cmd``; its wall time in seconds (fails loudly on a non-zero exit)."""
    start = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(cmd[:4])} ... failed ({r.returncode}):\n{r.stderr[-2000:]}"
        )
    return took


def make_small(root: Path, count: int, size: int) -> None:
    root.mkdir(parents=True)
    per_dir = 500
    for i in range(count):
        d = root / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir()
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def make_large(root: Path, count: int, size: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        with open(root / f"big{i}.bin", "wb") as f:
            left = size
            while left > 0:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n


def tree_bytes(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


class Services:
    """SeaweedFS through scripts/services.sh, with a lease for this process (so that a test run
    finishing meanwhile does not stop it), released at the end."""

    def _sh(self, *args: str) -> str:
        return subprocess.run(
            ["bash", str(REPO / "scripts/services.sh"), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def __enter__(self) -> dict[str, str]:
        self._sh("start", "--holder", str(os.getpid()), "seaweedfs")
        env: dict[str, str] = {}
        for line in self._sh("env", "seaweedfs").splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            env[k] = v.strip("'")
        return {
            "endpoint": env["OSMO_TEST_S3_ENDPOINT"],
            "key": env["OSMO_TEST_S3_ACCESS_KEY_ID"],
            "secret": env["OSMO_TEST_S3_SECRET_ACCESS_KEY"],
        }

    def __exit__(self, *exc: object) -> None:
        subprocess.run(
            [
                "bash",
                str(REPO / "scripts/services.sh"),
                "stop",
                "--holder",
                str(os.getpid()),
                "seaweedfs",
            ],
            check=False,
            capture_output=True,
        )


def tools(endpoint: str) -> dict[str, dict[str, Any]]:
    osmo = str(BIN / "osmo")
    s5 = str(BIN / "s5cmd")
    aws = str(BIN / "aws")
    return {
        "osmo": {
            "up": lambda src, url: [osmo, "data", "upload", url, f"{src}/", "--no-progress"],
            "down": lambda url, dst: [osmo, "data", "download", url, str(dst), "--no-progress"],
        },
        "s5cmd": {
            "up": lambda src, url: [s5, "--endpoint-url", endpoint, "cp", f"{src}/*", f"{url}/"],
            "down": lambda url, dst: [s5, "--endpoint-url", endpoint, "cp", f"{url}/*", f"{dst}/"],
        },
        "aws": {
            "up": lambda src, url: [
                aws,
                "--endpoint-url",
                endpoint,
                "s3",
                "cp",
                "--recursive",
                "--only-show-errors",
                str(src),
                url,
            ],
            "down": lambda url, dst: [
                aws,
                "--endpoint-url",
                endpoint,
                "s3",
                "cp",
                "--recursive",
                "--only-show-errors",
                url,
                str(dst),
            ],
        },
    }


def run_shape(
    name: str,
    src: Path,
    bucket: str,
    env: dict[str, str],
    work: Path,
    repeat: int,
    endpoint: str,
) -> dict[str, Any]:
    files, nbytes = tree_bytes(src)
    out: dict[str, Any] = {"files": files, "bytes": nbytes, "tools": {}}
    cmds = tools(endpoint)
    ref_url = ""
    for tool, c in cmds.items():
        best_up = best_down = float("inf")
        for _ in range(repeat):
            url = f"s3://{bucket}/{name}-{tool}-{uuid.uuid4().hex[:6]}"
            best_up = min(best_up, sh(c["up"](src, url), env))
            if tool == "osmo" and not ref_url:
                ref_url = url  # every tool downloads these same objects
        for _ in range(repeat):
            dst = work / f"dl-{tool}"
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir()
            best_down = min(best_down, sh(c["down"](ref_url, dst), env))
            got = tree_bytes(dst)
            if got != (files, nbytes):
                raise SystemExit(f"bench: {tool} downloaded {got}, expected {(files, nbytes)}")
            shutil.rmtree(dst, ignore_errors=True)
        out["tools"][tool] = {
            "upload_s": round(best_up, 3),
            "download_s": round(best_down, 3),
            "upload_MBps": round(nbytes / best_up / 1e6, 1),
            "download_MBps": round(nbytes / best_down / 1e6, 1),
            "upload_files_per_s": round(files / best_up, 1),
            "download_files_per_s": round(files / best_down, 1),
        }
        print(
            f"  {name:<6} {tool:<6} upload {best_up:7.2f} s ({nbytes / best_up / 1e6:7.1f} MB/s, "
            f"{files / best_up:8.0f} files/s)   download {best_down:7.2f} s "
            f"({nbytes / best_down / 1e6:7.1f} MB/s, {files / best_down:8.0f} files/s)",
            flush=True,
        )
    t = out["tools"]
    ratios = {}
    for d in ("upload", "download"):
        fastest_other = min(t[k][f"{d}_s"] for k in t if k != "osmo")
        ratios[d] = round(fastest_other / t["osmo"][f"{d}_s"], 3)
    out["ratio_upload"] = ratios["upload"]
    out["ratio_download"] = ratios["download"]
    out["ratio"] = min(ratios.values())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes, under two minutes")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool and direction (best)")
    ap.add_argument("--out", type=Path, help="JSON output (default bench/results/data.json)")
    args = ap.parse_args()
    small = (2_000, 10 * 1000) if args.quick else (10_000, 10 * 1000)
    large = (2, 128 * MiB) if args.quick else (2, 1024 * MiB)
    started = time.perf_counter()
    with Services() as s3, tempfile.TemporaryDirectory(prefix="osmo-bench-data-") as tmp:
        work = Path(tmp)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        home = work / "home"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "OSMO_HOME": str(home),
            "AWS_ACCESS_KEY_ID": s3["key"],
            "AWS_SECRET_ACCESS_KEY": s3["secret"],
            "AWS_ENDPOINT_URL": s3["endpoint"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
        sh([str(BIN / "aws"), "--endpoint-url", s3["endpoint"], "s3", "mb", f"s3://{bucket}"], env)
        print(f"bench/data.py: SeaweedFS {s3['endpoint']}, bucket {bucket}", flush=True)
        make_small(work / "small", *small)
        make_large(work / "large", *large)
        results = {
            "small": run_shape(
                "small", work / "small", bucket, env, work, args.repeat, s3["endpoint"]
            ),
            "large": run_shape(
                "large", work / "large", bucket, env, work, args.repeat, s3["endpoint"]
            ),
        }
    record = {
        "bench": "data",
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "shapes": {
            "small": f"{small[0]} x {small[1] // 1000} KB",
            "large": f"{large[0]} x {large[1] // MiB} MiB",
        },
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
        "small_files_ratio": results["small"]["ratio"],
        "large_files_ratio": results["large"]["ratio"],
    }
    out = args.out or REPO / "bench" / "results" / (
        "data-quick.json" if args.quick else "data.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        json.dumps(
            {
                "bench": "data",
                "quick": args.quick,
                "small_files_ratio": record["small_files_ratio"],
                "large_files_ratio": record["large_files_ratio"],
                "small_ratio_upload": results["small"]["ratio_upload"],
                "small_ratio_download": results["small"]["ratio_download"],
                "large_ratio_upload": results["large"]["ratio_upload"],
                "large_ratio_download": results["large"]["ratio_download"],
                "seconds": record["seconds"],
            }
        )
    )


if __name__ == "__main__":
    main()
