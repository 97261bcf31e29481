#!/usr/bin/python3
"""Checks that PNG files show a picture, not a blank page: enough non-background pixels, pixel
variance, and (optionally) pixels of given colours. Used by the HTML render and plot tests.

usage: png_check.py [--min-ink F] [--color RRGGBB:MIN_PIXELS ...] FILE...
Exit 0 when every file passes, 1 with a reason per failing file, 77 when Pillow is missing."""
import argparse
import sys

try:
    from PIL import Image, ImageStat
except ImportError:
    print("SKIP: python3-pil is not installed (scripts/install-deps.sh --test installs it)")
    sys.exit(77)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-ink", type=float, default=0.01, help="fraction of pixels that differ from the background")
    ap.add_argument("--min-stddev", type=float, default=10.0, help="per-channel pixel standard deviation, 0-255")
    ap.add_argument("--color", action="append", default=[], help="RRGGBB:MIN_PIXELS, +-24 per channel")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    failed = False
    for path in a.files:
        try:
            img = Image.open(path).convert("RGB")
        except Exception as e:  # not a PNG at all
            print(f"{path}: cannot be read as an image: {e}")
            failed = True
            continue
        w, h = img.size
        # The background is the most common colour.
        colors = img.getcolors(maxcolors=w * h)
        background = max(colors)[1]
        ink = 1 - max(colors)[0] / (w * h)
        stddev = max(ImageStat.Stat(img).stddev)
        reasons = []
        if ink < a.min_ink:
            reasons.append(f"only {ink:.4f} of the pixels differ from the background {background} (want >= {a.min_ink})")
        if stddev < a.min_stddev:
            reasons.append(f"pixel standard deviation {stddev:.1f} < {a.min_stddev}")
        for spec in a.color:
            hexrgb, minimum = spec.split(":")
            want = tuple(int(hexrgb[i:i + 2], 16) for i in (0, 2, 4))
            n = sum(c for c, rgb in colors if all(abs(x - y) <= 24 for x, y in zip(rgb, want)))
            if n < int(minimum):
                reasons.append(f"{n} pixels of #{hexrgb} (want >= {minimum})")
        if reasons:
            print(f"{path}: looks blank or incomplete ({w}x{h}): " + "; ".join(reasons))
            failed = True
        else:
            print(f"{path}: {w}x{h}, {len(colors)} colours, {ink:.3f} ink, stddev {stddev:.1f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
