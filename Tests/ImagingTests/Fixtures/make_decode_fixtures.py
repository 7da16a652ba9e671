"""Decode fixtures for ImagingTests/DecodeTests.swift: small JPEG and PNG files, the RGB8 each
should decode to, bad inputs, and manifest.json describing what the decoder must do with each.

Regenerate (by hand; the outputs are committed, the tests never run this):

    /opt/catlip-peers/bin/pip install pypng      # once, next to Pillow 13 and numpy
    /opt/catlip-peers/bin/python Tests/ImagingTests/Fixtures/make_decode_fixtures.py

It also needs a C compiler, the system libjpeg headers (libjpeg-dev, libjpeg-turbo 2.1.5, the
library the Swift decoder links) and `cjpeg` (apt: libjpeg-turbo-progs). A small C helper is
compiled into a temporary directory to (a) write YCCK and Adobe-less CMYK JPEGs, which neither
Pillow nor cjpeg can, and (b) decode every JPEG with the system libjpeg so that the JPEG
tolerances below are measured, not guessed. Output is deterministic: fixed seeds, fixed encoder settings, files written in a
fixed order; rerunning with the same library versions gives identical bytes.

Everything goes to decode/ next to this script (about 190 KB):

JPEG (expected = Pillow's decode, `convert("RGB")`, after `ImageOps.exif_transpose` for EXIF):
  jpeg_baseline_420_37x23.jpg   baseline, 4:2:0, odd size (partial MCUs on both edges)
  jpeg_baseline_422_33x17.jpg   baseline, 4:2:2
  jpeg_baseline_444_37x23.jpg   baseline, 4:4:4
  jpeg_baseline_1x1.jpg         smallest image; jpeg_baseline_420_9x1.jpg one row
  jpeg_progressive_420_37x23.jpg, jpeg_progressive_444_45x31.jpg   progressive
  jpeg_gray_37x23.jpg           one component
  jpeg_cmyk_adobe_37x23.jpg     CMYK, Adobe APP14, values stored inverted (Pillow's convention)
  jpeg_ycck_adobe_37x23.jpg     YCCK, Adobe APP14 transform 2 (written by the C helper)
  jpeg_cmyk_noadobe_37x23.jpg   CMYK without APP14 (C helper), values inverted: Pillow reads
                                every CMYK JPEG as Adobe-inverted, so the expected image does too
  jpeg_rgb_colorspace_37x23.jpg RGB components without YCbCr transform (cjpeg -rgb)
  jpeg_restart_blocks_37x23.jpg Pillow restart_marker_blocks=1 (RST after every MCU)
  jpeg_restart_rows_45x47.jpg   cjpeg -restart 1 (RST after every MCU row)
  jpeg_arithmetic_37x23.jpg     arithmetic coding (cjpeg -arithmetic)
  jpeg_exif_orientation_N.jpg   N = 1..8: 24x16 image of four coloured quadrants with EXIF
                                orientation N (Pillow, little-endian TIFF)
  jpeg_exif_orientation_6_bigendian.jpg   "MM" TIFF header, orientation after Make/Model tags
  jpeg_exif_orientation_9_invalid.jpg     orientation 9 is not valid: treated as 1
  jpeg_named_png.png            a JPEG with a .png name: content decides
Each has NAME.expected.png (RGB8). The tolerance is the largest difference between Pillow's
libjpeg-turbo and the system libjpeg-turbo (ISLOW, fancy upsampling): 0 where they agree.

PNG (pypng; expected computed in numpy by the decoder's contract, see `composite8/16`):
  png_grey{1,2,4,8,16}, png_greyalpha{8,16}, png_rgb{8,16}, png_rgba{8,16},
  png_pal{1,2,4,8} and png_pal{1,2,4,8}_trns (per-index alpha),
  png_grey{1,2,4,8,16}_trns and png_rgb{8,16}_trns (tRNS colour key),
  *_adam7 interlaced variants, 1x1 images, png_rgb8_gamma_text (gAMA and tEXt must not change
  pixels), png_rgb8_multi_idat (IDAT split in 50-byte chunks), png_named_jpg.jpg.
  Contract: palette and grey expand to RGB; sub-8-bit grey scales by 255/(2^d - 1); 16-bit
  samples reduce as round(v * 255 / 65535); alpha composites onto the background (white unless
  stated) at 8 bits as (c*a + bg*(255-a) + 127) // 255, at 16 bits as
  v16 = (c*a + bg16*(65535-a) + 32767) // 65535, bg16 = bg*257, then v8 = (v16*255 + 32767) // 65535;
  tRNS colour-key pixels are fully transparent. NAME.expected.png is RGB8, non-interlaced;
  several also have NAME.expected_black.png, the same image composited onto black.

Bad inputs (expected error kind in the manifest):
  bad_truncated.jpg            cut in the middle of the scan ("truncated"); in non-strict mode
                               it decodes, bad_truncated.nonstrict.expected.png is what
                               libjpeg makes of it (rest filled with grey)
  bad_truncated.png            cut in the middle of IDAT ("truncated")
  bad_garbage_entropy.jpg      entropy-coded bytes overwritten with noise ("corrupt")
  bad_sof_sampling.jpg         SOF with sampling factor 0 ("corrupt")
  bad_sof_length.jpg           SOF component count disagrees with its length ("corrupt")
  bad_sof_zero_width.jpg       SOF width 0 ("empty image")
  bomb_30000x30000.jpg         valid small JPEG whose SOF says 30000x30000 ("too large")
  bomb_100000x100000.png       valid small PNG whose IHDR says 100000x100000 ("too large")
  bad_zero_width.png           IHDR width 0, CRC fixed ("empty image")
  bad_ihdr_crc.png             IHDR CRC wrong ("corrupt")
  bad_idat_zlib.png            zlib stream damaged, chunk CRC fixed ("corrupt")
  not_image.gif, not_image.webp, not_image.bmp, not_image.txt, empty.jpg ("unsupported format")

manifest.json: {"cases": [{"file", "expected", "tolerance", "error", "orientation", "info",
"expected_black", "nonstrict_expected", "note"}]}; `info` (when present) lists header fields
ImageDecoder.info must report, named as ImageInfo's coding keys.
"""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import png  # pypng
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "decode")

cases = []


def path(name):
    return os.path.join(OUT, name)


def write_bytes(name, data):
    with open(path(name), "wb") as f:
        f.write(data)


def save_expected(name, rgb):
    """Writes an (H, W, 3) uint8 array as an RGB8 non-interlaced PNG."""
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, rgb.shape
    h, w, _ = rgb.shape
    with open(path(name), "wb") as f:
        png.Writer(w, h, greyscale=False, bitdepth=8, compression=9).write(
            f, rgb.reshape(h, w * 3).tolist())
    return name


def add(file, expected=None, tolerance=0, error=None, orientation=None, info=None, note="",
        **extra):
    case = {"file": file, "expected": expected, "tolerance": tolerance, "error": error,
            "orientation": orientation, "info": info, "note": note}
    case.update(extra)
    cases.append(case)


# ---------------------------------------------------------------------------------------------
# Test images


def pattern(w, h, seed):
    """A deterministic RGB8 image with gradients, hard saturated edges and a noisy patch."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = x * 255 // max(w - 1, 1)
    g = y * 255 // max(h - 1, 1)
    b = (x * 37 + y * 91 + seed * 13) % 256
    img = np.stack([r, g, b], axis=-1).astype(np.uint8)
    if w >= 6 and h >= 6:
        img[h // 4: h // 2, w // 5: w // 2] = (230, 20, 30)
        img[h // 2: h * 3 // 4 + 1, w // 2: w * 4 // 5] = (20, 40, 220)
        ny, nx = h - h // 2 - 1, w // 4
        img[h // 2: h // 2 + ny, 1: 1 + nx] = rng.randint(0, 256, (ny, nx, 3))
    return img


def quadrants(w=24, h=16):
    """Four distinct flat quadrants: any flip or turn gives a different image."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (220, 30, 30)    # top left red
    img[: h // 2, w // 2:] = (30, 200, 40)     # top right green
    img[h // 2:, : w // 2] = (30, 50, 220)     # bottom left blue
    img[h // 2:, w // 2:] = (240, 230, 40)     # bottom right yellow
    img[1:3, 1:3] = (255, 255, 255)            # a corner mark
    return img


# ---------------------------------------------------------------------------------------------
# The C helper: system libjpeg (the one the Swift decoder links)

HELPER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

static int warnings = 0;
static void emit(j_common_ptr c, int level) {
    if (level < 0) {
        char text[JMSG_LENGTH_MAX];
        (*c->err->format_message)(c, text);
        fprintf(stderr, "libjpeg warning %d: %s\n", c->err->msg_code, text);
        warnings++;
    }
}

int main(int argc, char **argv) {
    if (argc == 9 && strcmp(argv[1], "encode") == 0) {
        /* encode IN.cmyk WIDTH HEIGHT QUALITY ycck|cmyk ADOBE OUT.jpg: raw CMYK as stored
           (Adobe-inverted) to a YCCK or CMYK JPEG, with or without the Adobe APP14 marker */
        int w = atoi(argv[3]), h = atoi(argv[4]), q = atoi(argv[5]);
        int ycck = strcmp(argv[6], "ycck") == 0, adobe = atoi(argv[7]);
        FILE *in = fopen(argv[2], "rb"), *out = fopen(argv[8], "wb");
        unsigned char *buf = malloc((size_t)w * h * 4);
        if (!in || !out || fread(buf, 1, (size_t)w * h * 4, in) != (size_t)w * h * 4) return 2;
        struct jpeg_compress_struct c;
        struct jpeg_error_mgr e;
        c.err = jpeg_std_error(&e);
        jpeg_create_compress(&c);
        jpeg_stdio_dest(&c, out);
        c.image_width = w;
        c.image_height = h;
        c.input_components = 4;
        c.in_color_space = JCS_CMYK;
        jpeg_set_defaults(&c);
        jpeg_set_colorspace(&c, ycck ? JCS_YCCK : JCS_CMYK);
        c.write_Adobe_marker = adobe ? TRUE : FALSE;
        jpeg_set_quality(&c, q, TRUE);
        jpeg_start_compress(&c, TRUE);
        while (c.next_scanline < c.image_height) {
            JSAMPROW row = buf + (size_t)c.next_scanline * w * 4;
            jpeg_write_scanlines(&c, &row, 1);
        }
        jpeg_finish_compress(&c);
        jpeg_destroy_compress(&c);
        fclose(out);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "decode") == 0) {
        /* decode IN.jpg OUT.raw: RGB, or CMYK as stored for CMYK/YCCK files. Prints
           "width height out_components jpeg_color_space saw_adobe progressive warnings". */
        FILE *in = fopen(argv[2], "rb"), *out = fopen(argv[3], "wb");
        if (!in || !out) return 2;
        struct jpeg_decompress_struct d;
        struct jpeg_error_mgr e;
        d.err = jpeg_std_error(&e);
        e.emit_message = emit;
        jpeg_create_decompress(&d);
        jpeg_stdio_src(&d, in);
        jpeg_read_header(&d, TRUE);
        int cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
        d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
        jpeg_start_decompress(&d);
        size_t stride = (size_t)d.output_width * d.output_components;
        unsigned char *row = malloc(stride);
        while (d.output_scanline < d.output_height) {
            jpeg_read_scanlines(&d, &row, 1);
            fwrite(row, 1, stride, out);
        }
        jpeg_finish_decompress(&d);
        printf("%u %u %d %d %d %d %d\n", d.output_width, d.output_height, d.output_components,
               (int)d.jpeg_color_space, (int)d.saw_Adobe_marker, (int)d.progressive_mode,
               warnings);
        jpeg_destroy_decompress(&d);
        fclose(out);
        return 0;
    }
    fprintf(stderr, "usage: encode IN W H Q ycck|cmyk ADOBE OUT | decode IN OUT\n");
    return 2;
}
"""


class Helper:
    def __init__(self, workdir):
        self.dir = workdir
        src = os.path.join(workdir, "helper.c")
        self.exe = os.path.join(workdir, "helper")
        with open(src, "w") as f:
            f.write(HELPER_C)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libjpeg"], check=True,
                               capture_output=True, text=True).stdout.split()
        subprocess.run(["cc", "-O2", "-o", self.exe, src] + flags, check=True)

    def write_cmyk(self, cmyk_stored, quality, space, adobe, out_path):
        h, w, _ = cmyk_stored.shape
        raw = os.path.join(self.dir, "in.cmyk")
        cmyk_stored.astype(np.uint8).tofile(raw)
        subprocess.run([self.exe, "encode", raw, str(w), str(h), str(quality), space,
                        str(int(adobe)), out_path], check=True)

    def decode_rgb(self, jpeg_path):
        """System-libjpeg decode to RGB8, CMYK converted with Pillow's formula; also the
        number of libjpeg warnings."""
        raw = os.path.join(self.dir, "out.raw")
        r = subprocess.run([self.exe, "decode", jpeg_path, raw], check=True,
                           capture_output=True, text=True)
        w, h, comps, space, adobe, _, warnings = map(int, r.stdout.split())
        data = np.fromfile(raw, np.uint8).reshape(h, w, comps)
        if comps == 4:
            # Pillow reads every CMYK JPEG as "CMYK;I" (Adobe inversion) then converts
            # R = (255 - K) - C * (255 - K) / 255 with MULDIV255 rounding.
            cmyk = 255 - data.astype(np.int64)
            nk = 255 - cmyk[..., 3:4]
            t = cmyk[..., :3] * nk + 128
            data = (nk - (((t >> 8) + t) >> 8)).astype(np.uint8)
        return data, warnings


def pillow_rgb(data, transpose=False):
    im = Image.open(io.BytesIO(data))
    im.load()
    if transpose:
        im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGB"))


def jpeg_bytes(rgb_or_image, **kw):
    im = rgb_or_image if isinstance(rgb_or_image, Image.Image) else Image.fromarray(rgb_or_image)
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def add_jpeg(helper, name, data, note, orientation=None, info=None, transpose=False):
    write_bytes(name, data)
    expected = pillow_rgb(data, transpose=transpose)
    stored, warnings = helper.decode_rgb(path(name))
    assert warnings == 0, (name, warnings)
    if transpose:
        stored = orient(stored, Image.open(io.BytesIO(data)).getexif().get(0x0112, 1))
    diff = int(np.abs(expected.astype(int) - stored.astype(int)).max())
    assert diff <= 2, f"{name}: Pillow and system libjpeg differ by {diff}"
    stem = name.rsplit(".", 1)[0]
    add(name, save_expected(stem + ".expected.png", expected), tolerance=diff, note=note,
        orientation=orientation, info=info)
    return diff


def orient(a, n):
    """The EXIF rule in numpy, independent of Pillow's exif_transpose (checked against it)."""
    return {2: lambda: a[:, ::-1], 3: lambda: a[::-1, ::-1], 4: lambda: a[::-1],
            5: lambda: a.transpose(1, 0, 2), 6: lambda: np.rot90(a, -1),
            7: lambda: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda: np.rot90(a, 1)}.get(
        n, lambda: a)()


def find_marker(data, marker):
    """Offset of the first `FF marker` segment before the scan data."""
    p = 2
    while p + 4 <= len(data):
        assert data[p] == 0xFF, p
        m = data[p + 1]
        if m == marker:
            return p
        if m == 0xDA:
            break
        p += 2 + struct.unpack(">H", data[p + 2: p + 4])[0]
    raise ValueError(f"marker {marker:#x} not found")


def scan_range(data):
    """(start, end) of the first scan's entropy-coded data."""
    sos = find_marker(data, 0xDA)
    start = sos + 2 + struct.unpack(">H", data[sos + 2: sos + 4])[0]
    end = data.index(b"\xff\xd9", start)
    return start, end


def make_jpegs(helper, work):
    base = pattern(37, 23, 1)
    add_jpeg(helper, "jpeg_baseline_420_37x23.jpg", jpeg_bytes(base, quality=90, subsampling=2),
             "baseline 4:2:0, partial MCUs",
             info={"format": "jpeg", "width": 37, "height": 23, "channels": 3, "bit_depth": 8,
                   "color_space": "ycbcr", "interlaced": False, "has_alpha": False})
    add_jpeg(helper, "jpeg_baseline_422_33x17.jpg",
             jpeg_bytes(pattern(33, 17, 2), quality=90, subsampling=1), "baseline 4:2:2")
    add_jpeg(helper, "jpeg_baseline_444_37x23.jpg", jpeg_bytes(base, quality=95, subsampling=0),
             "baseline 4:4:4")
    add_jpeg(helper, "jpeg_baseline_1x1.jpg",
             jpeg_bytes(np.array([[[200, 60, 90]]], np.uint8), quality=90), "one pixel",
             info={"format": "jpeg", "width": 1, "height": 1, "channels": 3, "bit_depth": 8})
    add_jpeg(helper, "jpeg_baseline_420_9x1.jpg",
             jpeg_bytes(pattern(9, 1, 3), quality=90, subsampling=2), "one row")
    add_jpeg(helper, "jpeg_progressive_420_37x23.jpg",
             jpeg_bytes(base, quality=90, subsampling=2, progressive=True), "progressive 4:2:0",
             info={"format": "jpeg", "width": 37, "height": 23, "channels": 3, "bit_depth": 8,
                   "interlaced": True})
    add_jpeg(helper, "jpeg_progressive_444_45x31.jpg",
             jpeg_bytes(pattern(45, 31, 4), quality=85, subsampling=0, progressive=True),
             "progressive 4:4:4")
    gray = Image.fromarray(base).convert("L")
    add_jpeg(helper, "jpeg_gray_37x23.jpg", jpeg_bytes(gray, quality=90), "grayscale",
             info={"format": "jpeg", "width": 37, "height": 23, "channels": 1, "bit_depth": 8,
                   "color_space": "grayscale"})
    cmyk = Image.fromarray(base).convert("CMYK")
    # Pillow's RGB->CMYK has K = 0 everywhere; give K some range so the K path is exercised.
    c = np.asarray(cmyk).copy()
    c[..., 3] = (np.arange(37)[None, :] * 4 + np.arange(23)[:, None] * 3).astype(np.uint8)
    cmyk = Image.fromarray(c, "CMYK")
    add_jpeg(helper, "jpeg_cmyk_adobe_37x23.jpg", jpeg_bytes(cmyk, quality=92),
             "CMYK with Adobe APP14, inverted values",
             info={"format": "jpeg", "width": 37, "height": 23, "channels": 4, "bit_depth": 8,
                   "color_space": "cmyk"})
    ycck_path = os.path.join(work, "ycck.jpg")
    helper.write_cmyk(255 - c, 92, "ycck", True, ycck_path)  # Adobe convention: inverted
    with open(ycck_path, "rb") as f:
        ycck = f.read()
    im = Image.open(io.BytesIO(ycck))
    assert im.mode == "CMYK" and im.info.get("adobe_transform") == 2, (im.mode, im.info)
    add_jpeg(helper, "jpeg_ycck_adobe_37x23.jpg", ycck, "YCCK, Adobe APP14 transform 2",
             info={"format": "jpeg", "width": 37, "height": 23, "channels": 4, "bit_depth": 8,
                   "color_space": "ycck"})

    noadobe_path = os.path.join(work, "noadobe.jpg")
    helper.write_cmyk(255 - c, 92, "cmyk", False, noadobe_path)
    with open(noadobe_path, "rb") as f:
        noadobe = f.read()
    assert b"Adobe" not in noadobe and Image.open(io.BytesIO(noadobe)).mode == "CMYK"
    add_jpeg(helper, "jpeg_cmyk_noadobe_37x23.jpg", noadobe,
             "CMYK without Adobe APP14, values inverted: Pillow assumes Adobe inversion anyway",
             info={"format": "jpeg", "width": 37, "height": 23, "channels": 4,
                   "color_space": "cmyk"})

    ppm = os.path.join(work, "base.ppm")
    Image.fromarray(base).save(ppm)
    ppm45 = os.path.join(work, "p45.ppm")
    Image.fromarray(pattern(45, 47, 5)).save(ppm45)

    def cjpeg(args, src):
        return subprocess.run(["cjpeg"] + args + [src], check=True, capture_output=True).stdout

    rgbjpeg = cjpeg(["-quality", "90", "-rgb"], ppm)
    add_jpeg(helper, "jpeg_rgb_colorspace_37x23.jpg", rgbjpeg,
             "RGB components, Adobe transform 0 (no YCbCr)",
             info={"format": "jpeg", "width": 37, "height": 23, "channels": 3, "bit_depth": 8,
                   "color_space": "rgb"})
    blocks = jpeg_bytes(base, quality=90, subsampling=2, restart_marker_blocks=1)
    assert b"\xff\xdd" in blocks and b"\xff\xd0" in blocks
    add_jpeg(helper, "jpeg_restart_blocks_37x23.jpg", blocks, "DRI 1: RST after every MCU")
    rows = cjpeg(["-quality", "90", "-restart", "1"], ppm45)
    assert b"\xff\xdd" in rows and b"\xff\xd1" in rows
    add_jpeg(helper, "jpeg_restart_rows_45x47.jpg", rows, "cjpeg -restart 1: RST every MCU row")
    arith = cjpeg(["-quality", "90", "-arithmetic"], ppm)
    assert b"\xff\xc9" in arith  # SOF9: extended sequential, arithmetic
    add_jpeg(helper, "jpeg_arithmetic_37x23.jpg", arith, "arithmetic coding (SOF9)")

    q = quadrants()
    for n in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = n
        data = jpeg_bytes(q, quality=95, subsampling=0, exif=exif.tobytes())
        w, h = (16, 24) if n >= 5 else (24, 16)
        add_jpeg(helper, f"jpeg_exif_orientation_{n}.jpg", data,
                 f"EXIF orientation {n}, stored 24x16", orientation=n, transpose=True,
                 info={"format": "jpeg", "width": w, "height": h, "channels": 3,
                       "bit_depth": 8})
    # Big-endian TIFF, orientation as the third IFD0 entry after two ASCII tags stored by offset.
    make, model = b"catlip\x00", b"fixture-6\x00"
    entries = 3
    ifd_size = 2 + 12 * entries + 4
    data_off = 8 + ifd_size
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", entries)
    tiff += struct.pack(">HHII", 0x010F, 2, len(make), data_off)
    tiff += struct.pack(">HHII", 0x0110, 2, len(model), data_off + len(make))
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0)
    tiff += struct.pack(">I", 0) + make + model
    data = jpeg_bytes(q, quality=95, subsampling=0, exif=b"Exif\x00\x00" + tiff)
    assert Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6
    add_jpeg(helper, "jpeg_exif_orientation_6_bigendian.jpg", data,
             "EXIF orientation 6, big-endian TIFF, third entry", orientation=6, transpose=True,
             info={"format": "jpeg", "width": 16, "height": 24})
    exif = Image.Exif()
    exif[0x0112] = 9
    data = jpeg_bytes(q, quality=95, subsampling=0, exif=exif.tobytes())
    add_jpeg(helper, "jpeg_exif_orientation_9_invalid.jpg", data,
             "EXIF orientation 9 (invalid): treated as 1", orientation=1, transpose=True,
             info={"format": "jpeg", "width": 24, "height": 16})

    # Content, not name, decides the format.
    named = jpeg_bytes(pattern(20, 12, 6), quality=90)
    add_jpeg(helper, "jpeg_named_png.png", named, "a JPEG named .png",
             info={"format": "jpeg", "width": 20, "height": 12})

    # --- bad JPEGs
    big = jpeg_bytes(pattern(48, 48, 7), quality=90, subsampling=2)
    start, end = scan_range(big)
    cut = start + (end - start) * 6 // 10
    truncated = big[:cut]
    write_bytes("bad_truncated.jpg", truncated)
    stored, warnings = helper.decode_rgb(path("bad_truncated.jpg"))
    assert warnings > 0
    add("bad_truncated.jpg", error="truncated",
        nonstrict_expected=save_expected("bad_truncated.nonstrict.expected.png", stored),
        note=f"48x48 baseline cut at byte {cut} of {len(big)}, 60% into the scan; non-strict: "
             "system libjpeg's output (rest grey)",
        info={"format": "jpeg", "width": 48, "height": 48})

    rng = np.random.RandomState(11)
    garbage = bytearray(big)
    lo = start + (end - start) // 3
    noise = rng.randint(0, 255, 40).astype(np.uint8)  # 0..254: no 0xFF, so no fake markers
    garbage[lo: lo + 40] = noise.tobytes()
    write_bytes("bad_garbage_entropy.jpg", bytes(garbage))
    _, warnings = helper.decode_rgb(path("bad_garbage_entropy.jpg"))
    assert warnings > 0, "garbage must make libjpeg warn"
    add("bad_garbage_entropy.jpg", error="corrupt",
        note=f"40 noise bytes at offset {lo} of the scan; libjpeg warns {warnings}x")

    small = jpeg_bytes(pattern(16, 16, 8), quality=80, subsampling=2)
    sof = find_marker(small, 0xC0)
    # SOF0: FF C0, length(2), precision(1), height(2), width(2), ncomp(1), then 3 bytes each:
    # id, sampling (H<<4 | V), table.
    bad = bytearray(small)
    bad[sof + 10 + 1] = 0x00  # first component: H = V = 0
    write_bytes("bad_sof_sampling.jpg", bytes(bad))
    add("bad_sof_sampling.jpg", error="corrupt", note="SOF sampling factors 0")
    bad = bytearray(small)
    bad[sof + 9] = 4  # 4 components, length still for 3
    write_bytes("bad_sof_length.jpg", bytes(bad))
    add("bad_sof_length.jpg", error="corrupt", note="SOF says 4 components, length fits 3")
    bad = bytearray(small)
    bad[sof + 7: sof + 9] = struct.pack(">H", 0)
    write_bytes("bad_sof_zero_width.jpg", bytes(bad))
    add("bad_sof_zero_width.jpg", error="empty image", note="SOF width 0")
    bad = bytearray(small)
    bad[sof + 5: sof + 9] = struct.pack(">HH", 30000, 30000)
    write_bytes("bomb_30000x30000.jpg", bytes(bad))
    add("bomb_30000x30000.jpg", error="too large",
        note="16x16 JPEG whose SOF says 30000x30000: refuse before allocating",
        info={"format": "jpeg", "width": 30000, "height": 30000, "channels": 3})


# ---------------------------------------------------------------------------------------------
# PNG


def composite8(c, a, bg):
    return ((c.astype(np.int64) * a + bg * (255 - a.astype(np.int64)) + 127) // 255).astype(
        np.uint8)


def composite16(c, a, bg):
    bg16 = bg * 257
    a = a.astype(np.int64)
    v16 = (c.astype(np.int64) * a + bg16 * (65535 - a) + 32767) // 65535
    return ((v16 * 255 + 32767) // 65535).astype(np.uint8)


def reduce16(v):
    return ((v.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def write_png(name, rows, **kw):
    buf = io.BytesIO()
    png.Writer(**kw).write(buf, rows)
    write_bytes(name, buf.getvalue())
    return buf.getvalue()


def png_case(name, rows, rgb_white, rgb_black=None, info=None, note="", **kw):
    """Writes a PNG with pypng and its expected RGB8 (onto white, and onto black if given)."""
    write_png(name, rows, **kw)
    stem = name.rsplit(".", 1)[0]
    extra = {}
    if rgb_black is not None:
        extra["expected_black"] = save_expected(stem + ".expected_black.png", rgb_black)
    add(name, save_expected(stem + ".expected.png", rgb_white), tolerance=0, info=info,
        note=note, **extra)
    # pypng reads back what it wrote: a cheap check of the writer options.
    r = png.Reader(filename=path(name))
    r.preamble()


def grey_samples(w, h, depth, seed):
    rng = np.random.RandomState(seed)
    top = (1 << depth) - 1
    v = rng.randint(0, top + 1, (h, w)).astype(np.int64)
    v[0, : min(w, top + 1)] = np.arange(min(w, top + 1))  # every value in the first row
    v[-1, -1] = top
    if depth == 16:
        # values next to the 16->8 rounding boundaries (257k + 128 and + 129)
        edge = np.array([128, 129, 385, 386, 32767, 32768, 65407, 65408, 65534, 65535])
        v[1, : min(w, len(edge))] = edge[: min(w, len(edge))]
    return v


def alpha_samples(w, h, depth, seed):
    rng = np.random.RandomState(seed)
    top = (1 << depth) - 1
    a = rng.randint(0, top + 1, (h, w)).astype(np.int64)
    a[:, 0] = 0
    a[:, 1] = top
    a[0, 2:] = np.linspace(0, top, w - 2).astype(np.int64) if w > 2 else a[0, 2:]
    return a


def to8(v, depth):
    """Grey or colour samples of `depth` bits to 8 bits, by the contract."""
    if depth == 16:
        return reduce16(v)
    return (v * (255 // ((1 << depth) - 1))).astype(np.uint8)


def grey_rgb(g8):
    return np.repeat(g8[..., None], 3, axis=-1)


WHITE, BLACK = 255, 0


def make_pngs():
    W, H = 19, 13
    for interlace in (False, True):
        sfx = "_adam7" if interlace else ""
        for depth in (1, 2, 4, 8, 16):
            if interlace and depth not in (1, 4, 16):
                continue
            v = grey_samples(W, H, depth, 100 + depth)
            info = {"format": "png", "width": W, "height": H, "channels": 1,
                    "bit_depth": depth, "color_space": "grayscale", "interlaced": interlace,
                    "has_alpha": False}
            png_case(f"png_grey{depth}{sfx}.png", v.tolist(), grey_rgb(to8(v, depth)),
                     info=info, note=f"grey {depth}-bit", width=W, height=H, greyscale=True,
                     bitdepth=depth, interlace=interlace)
            # tRNS colour key: pixels equal to `key` are transparent.
            if interlace and depth != 16:
                continue
            key = int(v[H // 2, W // 2])
            out = grey_rgb(to8(v, depth))
            out_black = out.copy()
            out[v == key] = WHITE
            out_black[v == key] = BLACK
            png_case(f"png_grey{depth}_trns{sfx}.png", v.tolist(), out, out_black,
                     info={"format": "png", "bit_depth": depth, "has_alpha": True},
                     note=f"grey {depth}-bit, tRNS key {key}", width=W, height=H,
                     greyscale=True, bitdepth=depth, transparent=(key,), interlace=interlace)

        for depth in (8, 16):
            if interlace and depth == 16:
                continue
            g = grey_samples(W, H, depth, 200 + depth)
            a = alpha_samples(W, H, depth, 210 + depth)
            rows = np.stack([g, a], -1).reshape(H, W * 2).tolist()
            comp = composite16 if depth == 16 else composite8
            png_case(f"png_greyalpha{depth}{sfx}.png", rows, grey_rgb(comp(g, a, WHITE)),
                     grey_rgb(comp(g, a, BLACK)),
                     info={"format": "png", "width": W, "height": H, "channels": 2,
                           "bit_depth": depth, "color_space": "grayscale+alpha",
                           "has_alpha": True, "interlaced": interlace},
                     note=f"grey+alpha {depth}-bit", width=W, height=H, greyscale=True,
                     alpha=True, bitdepth=depth, interlace=interlace)

        for depth in (8, 16):
            rgb = np.stack([grey_samples(W, H, depth, 300 + depth + i) for i in range(3)], -1)
            png_case(f"png_rgb{depth}{sfx}.png", rgb.reshape(H, W * 3).tolist(), to8(rgb, depth),
                     info={"format": "png", "width": W, "height": H, "channels": 3,
                           "bit_depth": depth, "color_space": "rgb", "has_alpha": False,
                           "interlaced": interlace},
                     note=f"RGB {depth}-bit", width=W, height=H, greyscale=False,
                     bitdepth=depth, interlace=interlace)
            if not interlace or depth == 16:
                key = tuple(int(x) for x in rgb[3, 5])
                rgb[7, 2:6] = key  # a few more key pixels
                hit = np.all(rgb == np.array(key), axis=-1)
                out = to8(rgb, depth)
                out_black = out.copy()
                out[hit] = WHITE
                out_black[hit] = BLACK
                png_case(f"png_rgb{depth}_trns{sfx}.png", rgb.reshape(H, W * 3).tolist(), out,
                         out_black, info={"format": "png", "has_alpha": True},
                         note=f"RGB {depth}-bit, tRNS key {key}", width=W, height=H,
                         greyscale=False, bitdepth=depth, transparent=key, interlace=interlace)

            rgb = np.stack([grey_samples(W, H, depth, 400 + depth + i) for i in range(3)], -1)
            a = alpha_samples(W, H, depth, 410 + depth)
            comp = composite16 if depth == 16 else composite8
            rows = np.concatenate([rgb, a[..., None]], -1).reshape(H, W * 4).tolist()
            png_case(f"png_rgba{depth}{sfx}.png", rows, comp(rgb, a[..., None], WHITE),
                     comp(rgb, a[..., None], BLACK),
                     info={"format": "png", "width": W, "height": H, "channels": 4,
                           "bit_depth": depth, "color_space": "rgba", "has_alpha": True,
                           "interlaced": interlace},
                     note=f"RGBA {depth}-bit", width=W, height=H, greyscale=False, alpha=True,
                     bitdepth=depth, interlace=interlace)

        for depth in (1, 2, 4, 8):
            if interlace and depth not in (2, 4):
                continue
            n = 1 << depth if depth < 8 else 200
            rng = np.random.RandomState(500 + depth)
            pal = rng.randint(0, 256, (n, 3)).astype(np.int64)
            idx = rng.randint(0, n, (H, W)).astype(np.int64)
            idx[0, : min(W, n)] = np.arange(min(W, n))
            idx[-1, -1] = n - 1
            if not interlace:
                png_case(f"png_pal{depth}.png", idx.tolist(), pal[idx].astype(np.uint8),
                         info={"format": "png", "width": W, "height": H, "bit_depth": depth,
                               "color_space": "palette", "has_alpha": False},
                         note=f"palette {depth}-bit, {n} entries", width=W, height=H,
                         palette=[tuple(p) for p in pal.tolist()], bitdepth=depth)
            # tRNS for the first m entries (pypng wants them first); the rest opaque.
            m = max(1, n // 2) if depth > 1 else 1
            alpha = rng.randint(0, 256, m).astype(np.int64)
            alpha[0] = 0
            if m > 2:
                alpha[1] = 255
            full_alpha = np.full(n, 255, np.int64)
            full_alpha[:m] = alpha
            palette = [tuple(pal[i].tolist()) + ((int(alpha[i]),) if i < m else ())
                       for i in range(n)]
            a = full_alpha[idx][..., None]
            png_case(f"png_pal{depth}_trns{sfx}.png", idx.tolist(),
                     composite8(pal[idx], a, WHITE), composite8(pal[idx], a, BLACK),
                     info={"format": "png", "bit_depth": depth, "color_space": "palette",
                           "has_alpha": True, "interlaced": interlace},
                     note=f"palette {depth}-bit, tRNS alpha for {m} of {n} entries",
                     width=W, height=H, palette=palette, bitdepth=depth, interlace=interlace)

    # 1x1 images, plain and interlaced (Adam7 passes 2-7 are empty).
    png_case("png_rgb8_1x1.png", [[10, 200, 30]], np.array([[[10, 200, 30]]], np.uint8),
             info={"format": "png", "width": 1, "height": 1}, note="one pixel",
             width=1, height=1, greyscale=False, bitdepth=8)
    a = np.array([[[100, 150, 200]]]), np.array([[[77]]])
    png_case("png_rgba8_1x1_adam7.png", [[100, 150, 200, 77]], composite8(a[0], a[1], WHITE),
             composite8(a[0], a[1], BLACK), info={"format": "png", "interlaced": True},
             note="one pixel, interlaced, alpha 77", width=1, height=1, greyscale=False,
             alpha=True, bitdepth=8, interlace=True)
    # Ancillary chunks that must not change pixels; IDAT split into many chunks.
    rgb = pattern(W, H, 9)
    rows = rgb.reshape(H, W * 3).tolist()
    data = write_png("png_rgb8_gamma_text.png", rows, width=W, height=H, greyscale=False,
                     bitdepth=8, gamma=0.45455)
    # pypng has no tEXt option: splice one in after IHDR.
    text = b"Comment\x00catlip decode fixture"
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(
        ">I", zlib.crc32(b"tEXt" + text))
    data = data[:33] + chunk + data[33:]
    write_bytes("png_rgb8_gamma_text.png", data)
    add("png_rgb8_gamma_text.png", save_expected("png_rgb8_gamma_text.expected.png", rgb),
        note="gAMA 0.45455 and tEXt: pixels unchanged")
    write_png("png_rgb8_multi_idat.png", rows, width=W, height=H, greyscale=False, bitdepth=8,
              chunk_limit=50)
    add("png_rgb8_multi_idat.png", save_expected("png_rgb8_multi_idat.expected.png", rgb),
        note="IDAT in 50-byte chunks")
    named = write_png("png_named_jpg.jpg", rows, width=W, height=H, greyscale=False,
                      bitdepth=8)
    add("png_named_jpg.jpg", "png_rgb8_multi_idat.expected.png", note="a PNG named .jpg",
        info={"format": "png", "width": W, "height": H})

    # --- bad PNGs
    big = write_png("tmp.png", pattern(40, 40, 10).reshape(40, 120).tolist(), width=40,
                    height=40, greyscale=False, bitdepth=8, compression=0)
    os.remove(path("tmp.png"))
    idat = big.index(b"IDAT") - 4
    idat_len = struct.unpack(">I", big[idat: idat + 4])[0]
    cut = idat + 8 + idat_len // 2
    write_bytes("bad_truncated.png", big[:cut])
    add("bad_truncated.png", error="truncated",
        note=f"40x40 PNG cut at byte {cut} of {len(big)}, half-way through IDAT",
        info={"format": "png", "width": 40, "height": 40})

    def patched_ihdr(data, width, height, fix_crc=True):
        d = bytearray(data)
        d[16:24] = struct.pack(">II", width, height)
        if fix_crc:
            d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])))
        return bytes(d)

    small = named
    write_bytes("bomb_100000x100000.png", patched_ihdr(small, 100000, 100000))
    add("bomb_100000x100000.png", error="too large",
        note="19x13 PNG whose IHDR (CRC fixed) says 100000x100000",
        info={"format": "png", "width": 100000, "height": 100000})
    write_bytes("bad_zero_width.png", patched_ihdr(small, 0, H))
    add("bad_zero_width.png", error="empty image", note="IHDR width 0, CRC fixed")
    d = bytearray(small)
    d[29] ^= 0x55
    write_bytes("bad_ihdr_crc.png", bytes(d))
    add("bad_ihdr_crc.png", error="corrupt", note="IHDR CRC wrong")
    # zlib stream damaged inside one IDAT, that chunk's CRC recomputed.
    d = bytearray(small)
    i = d.index(b"IDAT") - 4
    n = struct.unpack(">I", d[i: i + 4])[0]
    for k in range(2, min(n, 40)):
        d[i + 8 + k] ^= 0xA5
    d[i + 8 + n: i + 12 + n] = struct.pack(">I", zlib.crc32(bytes(d[i + 4: i + 8 + n])))
    write_bytes("bad_idat_zlib.png", bytes(d))
    add("bad_idat_zlib.png", error="corrupt", note="deflate data damaged, CRC fixed")


def make_others():
    img = Image.fromarray(pattern(16, 12, 12))
    for name, fmt, kw in [("not_image.gif", "GIF", {}), ("not_image.webp", "WEBP",
                                                         {"lossless": True}),
                          ("not_image.bmp", "BMP", {})]:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        write_bytes(name, buf.getvalue())
        add(name, error="unsupported format", note=f"a valid {fmt}")
    write_bytes("not_image.txt", b"This is a text file, not an image.\n")
    add("not_image.txt", error="unsupported format", note="text")
    write_bytes("empty.jpg", b"")
    add("empty.jpg", error="unsupported format", note="zero bytes")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    with tempfile.TemporaryDirectory() as work:
        helper = Helper(work)
        make_jpegs(helper, work)
    make_pngs()
    make_others()
    names = [c["file"] for c in cases]
    assert len(names) == len(set(names))
    with open(path("manifest.json"), "w") as f:
        json.dump({"generator": "make_decode_fixtures.py", "cases": cases}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(path(n)) for n in os.listdir(OUT))
    print(f"{len(cases)} cases, {len(os.listdir(OUT))} files, {total} bytes in {OUT}")
    for c in cases:
        if c["tolerance"]:
            print(f"  {c['file']}: Pillow vs system libjpeg max diff {c['tolerance']}")


if __name__ == "__main__":
    sys.exit(main())
