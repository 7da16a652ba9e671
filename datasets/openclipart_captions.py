#!/usr/bin/env python3
"""Build the OpenClipArt image-caption manifest (one TSV for the whole corpus).

Thin wrapper: the code lives in datasets/openclipart/svgmeta.py (shared with
datasets/openclipart/build.py, which writes the train/validation split and shards).

    python3 datasets/openclipart_captions.py --out /tmp/openclipart.tsv \\
        --captions-out /tmp/openclipart_captions.txt
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "openclipart"))

from svgmeta import main  # noqa: E402

if __name__ == "__main__":
    main()
