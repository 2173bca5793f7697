"""A tiny pure-Python PNG bar chart (zlib + a 5x7 pixel font), so the benchmark needs no matplotlib."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

# 5x7 glyphs, one string of 7 rows per character ('#' = ink). Upper case only; lower case is folded.
_FONT_ROWS = {
    "A": ".###.#...##...#######...##...##...#", "B": "####.#...#####.#...##...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.", "D": "####.#...##...##...##...##...#####.",
    "E": "######....####.#....#....#....#####", "F": "######....####.#....#....#....#....",
    "G": ".###.#...##....#.####...##...#.####", "H": "#...##...#######...##...##...##...#",
    "I": ".###...#....#....#....#....#...###.", "J": "..###" "...#." "...#." "...#." "...#." "#..#." ".##..",
    "K": "#...##..#.###..#..#.#...##...##...#", "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##...##...##...##...#", "N": "#...###..##.#.##..###...##...##...#",
    "O": ".###.#...##...##...##...##...#.###.", "P": "####.#...##...#####.#....#....#....",
    "Q": ".###.#...##...##...##.#.##..#..##.#", "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".#####....#.....###.....#....#####.", "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.", "V": "#...##...##...##...##...#.#.#...#..",
    "W": "#...##...##...##.#.##.#.##.#..#.#..", "X": "#...##...#.#.#...#...#.#.#...##...#",
    "Y": "#...##...#.#.#...#....#....#....#..", "Z": "#####....#...#...#...#...#....#####",
    "0": ".###.#...##..###.#.###..##...#.###.", "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####", "3": ".###.#...#....#..##.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.", "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.", "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.", "9": ".###.#...##...#.####....#...#..##..",
    " ": "." * 35, ".": "." * 30 + "..#..", ",": "." * 25 + "..#...#...", "-": "." * 15 + "#####" + "." * 15,
    "(": "...#...#...#....#....#.....#.....#.", ")": ".#.....#.....#....#....#...#...#...",
    "/": "....#....#...#...#...#...#....#....", "%": "##...##..#...#...#...#...#..##...##",
    ">": ".#.....#.....#.....#...#...#...#...",
}
_FONT_ROWS[":"] = "." * 5 + "..#.." + "." * 10 + "..#.." + "." * 10

Color = tuple[int, int, int]


class Canvas:
    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)) -> None:
        self.width, self.height = width, height
        self.pixels = [bytearray(bytes(background) * width) for _ in range(height)]

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, y0), min(self.height, y1)):
            row = self.pixels[y]
            for x in range(max(0, x0), min(self.width, x1)):
                row[3 * x : 3 * x + 3] = bytes(color)

    def text(self, x: int, y: int, text: str, color: Color = (0, 0, 0), scale: int = 2) -> int:
        """Draw ``text`` with its top-left at (x, y); returns the x after it."""
        for char in text.upper():
            glyph = _FONT_ROWS.get(char, _FONT_ROWS[" "])
            for index, ink in enumerate(glyph):
                if ink == "#":
                    gx, gy = index % 5, index // 5
                    self.rect(x + gx * scale, y + gy * scale, x + (gx + 1) * scale, y + (gy + 1) * scale, color)
            x += 6 * scale
        return x

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(row) for row in self.pixels)

        def chunk(kind: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(kind + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        return b"\x89PNG\r\n\x1a\n" + body


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 6 * scale


def bar_chart(path: Path, title: str, subtitle: str, bars: list[tuple[str, float, str, Color]],
              width: int = 1100) -> None:
    """Horizontal bars on a log scale: (label, value, value text, colour) per bar."""
    label_w = max(text_width(label) for label, *_ in bars) + 30
    top, bar_h, gap = 80, 34, 14
    height = top + len(bars) * (bar_h + gap) + 40
    canvas = Canvas(width, height)
    canvas.text(20, 16, title, scale=3)
    canvas.text(20, 50, subtitle, (90, 90, 90), scale=2)
    values = [value for _, value, _, _ in bars if value > 0]
    low, high = math.log10(min(values) / 2), math.log10(max(values) * 1.05)
    plot_w = width - label_w - max(text_width(shown) for *_, shown, _ in bars) - 30
    for index, (label, value, shown, color) in enumerate(bars):
        y = top + index * (bar_h + gap)
        canvas.text(20, y + 10, label)
        length = int(plot_w * (math.log10(value) - low) / (high - low)) if value > 0 else 0
        canvas.rect(label_w, y, label_w + max(length, 2), y + bar_h, color)
        canvas.text(label_w + length + 10, y + 10, shown)
    canvas.text(20, height - 28, "LOG SCALE. SHORTER IS FASTER.", (90, 90, 90))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(canvas.png())
