# Writes data/images/NNNNN.png (16x16 RGB, the background colour names the first noun, a
# square in the bottom-right corner the optional second) and data/train.tsv (relative paths).
import os, random, struct, zlib
nouns = ["dog", "cat", "car", "tree"]
colours = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 40)]
def png(path, side, pixels):
    raw = b"".join(b"\x00" + bytes(pixels[y * side * 3:(y + 1) * side * 3]) for y in range(side))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
rng = random.Random(7)
os.makedirs("data/images", exist_ok=True)
lines = []
side = 16
for i in range(32):
    a = rng.randrange(4)
    b = None if rng.random() < 0.5 else (a + 1 + rng.randrange(3)) % 4
    pixels = []
    for y in range(side):
        for x in range(side):
            c = colours[b] if b is not None and x >= side // 2 and y >= side // 2 else colours[a]
            n = rng.randrange(-8, 9)
            pixels += [max(0, min(255, v + n)) for v in c]
    name = "images/%05d.png" % i
    png("data/" + name, side, pixels)
    caption = "a %s and a %s - clip art" % (nouns[a], nouns[b]) if b is not None else "photo of a %s" % nouns[a]
    lines.append(name + "\t" + caption)
open("data/train.tsv", "w").write("\n".join(lines) + "\n")
