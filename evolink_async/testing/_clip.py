"""A small, valid MP4 clip made for one task: its duration, its aspect ratio, its colour.

No encoder is needed: every frame is an H.264 IDR picture whose macroblocks are all ``I_PCM``
(raw samples, which every H.264 decoder accepts, Constrained Baseline profile). The picture is
tiny (64 pixels on its long side, one frame per second), so a clip weighs about 4.6 KB a
second, and the track header states the requested display size (``1280x720`` for ``16:9``),
which players scale to. Each clip has a background colour drawn from its task id and a bar
that grows second by second, so clips differ and visibly play.

Layout: ``ftyp``, ``moov`` (``mvhd``, one ``trak`` with ``tkhd`` and an ``avc1`` sample
entry), then ``mdat``: the header first, as ``-movflags +faststart`` writes it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct

__all__ = ["CODED_LONG_SIDE", "display_size", "make_clip"]

#: pixels on the long side of the coded picture
CODED_LONG_SIDE = 64
_TIMESCALE = 1000  # media and movie time units per second
_NAMED = {"16:9": (1280, 720), "9:16": (720, 1280)}
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def display_size(aspect_ratio: str | None) -> tuple[int, int]:
    """The clip's display width and height for an ``aspect_ratio`` (None: 16:9)."""
    if aspect_ratio is None:
        return _NAMED["16:9"]
    if aspect_ratio in _NAMED:
        return _NAMED[aspect_ratio]
    match = _SIZE.match(aspect_ratio)
    if match is None or 0 in (int(match[1]), int(match[2])):
        return _NAMED["16:9"]
    return int(match[1]), int(match[2])


# ------------------------------------------------------------------------------- H.264


class _Bits:
    """An RBSP bit writer."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0  # bits not yet a whole byte
        self.count = 0

    def u(self, n: int, value: int) -> None:
        self.acc = self.acc << n | (value & ((1 << n) - 1))
        self.count += n
        while self.count >= 8:
            self.count -= 8
            self.out.append(self.acc >> self.count & 0xFF)
        self.acc &= (1 << self.count) - 1

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        if self.count:
            self.u(8 - self.count, 0)

    def raw(self, data: bytes) -> None:
        """Whole bytes, at a byte boundary."""
        assert self.count == 0
        self.out += data

    def trailing(self) -> bytes:
        self.u(1, 1)
        self.align_zero()
        return bytes(self.out)


def _nal(header: int, rbsp: bytes) -> bytes:
    """A NAL unit: its header byte and the RBSP with emulation prevention bytes."""
    out = bytearray([header])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps(mbs_w: int, mbs_h: int, crop_right: int, crop_bottom: int) -> bytes:
    b = _Bits()
    b.u(8, 66)  # profile_idc: Baseline
    b.u(8, 0xC0)  # constraint_set0 and set1: Constrained Baseline
    b.u(8, 10)  # level_idc 1.0
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(2)  # pic_order_cnt_type: output order = decoding order
    b.ue(1)  # max_num_ref_frames
    b.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    b.ue(mbs_w - 1)
    b.ue(mbs_h - 1)
    b.u(1, 1)  # frame_mbs_only_flag
    b.u(1, 1)  # direct_8x8_inference_flag
    cropping = crop_right or crop_bottom
    b.u(1, 1 if cropping else 0)
    if cropping:
        for offset in (0, crop_right // 2, 0, crop_bottom // 2):  # in 2-pixel units (4:2:0)
            b.ue(offset)
    b.u(1, 0)  # vui_parameters_present_flag
    return _nal(0x67, b.trailing())


def _pps() -> bytes:
    b = _Bits()
    b.ue(0)  # pic_parameter_set_id
    b.ue(0)  # seq_parameter_set_id
    b.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    b.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # num_slice_groups_minus1
    b.ue(0)  # num_ref_idx_l0_default_active_minus1
    b.ue(0)  # num_ref_idx_l1_default_active_minus1
    b.u(1, 0)  # weighted_pred_flag
    b.u(2, 0)  # weighted_bipred_idc
    b.se(0)  # pic_init_qp_minus26
    b.se(0)  # pic_init_qs_minus26
    b.se(0)  # chroma_qp_index_offset
    b.u(1, 1)  # deblocking_filter_control_present_flag
    b.u(1, 0)  # constrained_intra_pred_flag
    b.u(1, 0)  # redundant_pic_cnt_present_flag
    return _nal(0x68, b.trailing())


def _idr(index: int, macroblocks: list[bytes]) -> bytes:
    """One IDR picture, one slice, every macroblock I_PCM (384 raw bytes each)."""
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I (all slices of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.u(4, 0)  # frame_num
    b.ue(index % 2)  # idr_pic_id: differs between consecutive IDR pictures
    b.u(1, 0)  # no_output_of_prior_pics_flag
    b.u(1, 0)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    b.ue(1)  # disable_deblocking_filter_idc: off
    for samples in macroblocks:
        b.ue(25)  # mb_type: I_PCM
        b.align_zero()
        b.raw(samples)
    return _nal(0x65, b.trailing())


def _colour(task_id: str) -> tuple[int, int, int]:
    """The task's background colour (Y, Cb, Cr), kept inside the video range."""
    digest = hashlib.sha256(task_id.encode()).digest()
    return 60 + digest[0] % 100, 40 + digest[1] % 176, 40 + digest[2] % 176


def _picture(
    mbs: tuple[int, int], visible: tuple[int, int], colour: tuple[int, int, int], filled: float
) -> list[bytes]:
    """The macroblocks (raster order) of a frame: the background, and a light bar along the
    bottom of the visible picture, ``filled`` (0..1) of its width long."""
    (mbs_w, mbs_h), (width, height) = mbs, visible
    stride = mbs_w * 16
    bar = max(2, round(width * filled) // 2 * 2)
    planes = []
    for base, light, scale in zip(colour, (220, 128, 128), (1, 2, 2), strict=True):
        w = stride // scale
        plane = bytearray([base]) * (w * mbs_h * 16 // scale)
        for y in range(max(0, height - 6) // scale, max(0, height - 2) // scale):
            plane[y * w : y * w + bar // scale] = bytes([light]) * (bar // scale)
        planes.append((plane, w, 16 // scale))
    out = []
    for my in range(mbs_h):
        for mx in range(mbs_w):
            block = bytearray()
            for plane, w, size in planes:
                for j in range(size):
                    row = (my * size + j) * w + mx * size
                    block += plane[row : row + size]
            out.append(bytes(block))
    return out


# ------------------------------------------------------------------------------- MP4


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _stbl(avcc: bytes, visible: tuple[int, int], sizes: list[int], offset: int) -> bytes:
    entry = _box(
        b"avc1",
        bytes(6) + struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16) + struct.pack(">HH", *visible),
        struct.pack(">IIIH", 0x480000, 0x480000, 0, 1),  # 72 dpi, reserved, frame_count
        bytes(32) + struct.pack(">Hh", 0x18, -1),  # compressorname, depth, pre_defined
        _box(b"avcC", avcc),
    )
    return _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        _full(b"stts", 0, 0, struct.pack(">III", 1, len(sizes), _TIMESCALE)),
        _full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(sizes), 1)),
        _full(b"stsz", 0, 0, struct.pack(f">II{len(sizes)}I", 0, len(sizes), *sizes)),
        _full(b"stco", 0, 0, struct.pack(">II", 1, offset)),
    )


def _moov(duration_ms: int, display: tuple[int, int], stbl: bytes) -> bytes:
    mvhd = _full(
        b"mvhd", 0, 0,
        struct.pack(">IIIIIH", 0, 0, _TIMESCALE, duration_ms, 0x10000, 0x100),
        bytes(10), _MATRIX, bytes(24), struct.pack(">I", 2),
    )  # fmt: skip
    tkhd = _full(
        b"tkhd", 0, 3,  # enabled, in movie
        struct.pack(">IIII", 0, 0, 1, 0), struct.pack(">I", duration_ms), bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX,
        struct.pack(">II", display[0] << 16, display[1] << 16),
    )  # fmt: skip
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, _TIMESCALE, duration_ms, 0x55C4, 0))
    hdlr = _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00")
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    minf = _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    return _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf)))


def _geometry(display: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(macroblocks across, down) and the visible (width, height) of the coded picture."""
    w, h = display
    scale = CODED_LONG_SIDE / max(w, h)
    width = max(2, round(w * scale / 2) * 2)
    height = max(2, round(h * scale / 2) * 2)
    return ((width + 15) // 16, (height + 15) // 16), (width, height)


@functools.lru_cache(maxsize=64)
def make_clip(task_id: str, duration: int, aspect_ratio: str | None) -> bytes:
    """The MP4 of a task: ``duration`` seconds (one frame a second, at least one), displayed
    at :func:`display_size` of ``aspect_ratio``, in the task's colour."""
    display = display_size(aspect_ratio)
    mbs, visible = _geometry(display)
    sps = _sps(*mbs, mbs[0] * 16 - visible[0], mbs[1] * 16 - visible[1])
    pps = _pps()
    avcc = (
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
        + struct.pack(">H", len(sps)) + sps
        + bytes([1]) + struct.pack(">H", len(pps)) + pps
    )  # fmt: skip
    frames = max(1, duration)
    colour = _colour(task_id)
    samples = []
    for i in range(frames):
        nal = _idr(i, _picture(mbs, visible, colour, (i + 1) / frames))
        samples.append(struct.pack(">I", len(nal)) + nal)
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isomiso2avc1mp41")
    sizes = [len(s) for s in samples]
    duration_ms = frames * _TIMESCALE
    probe = _moov(duration_ms, display, _stbl(avcc, visible, sizes, 0))
    offset = len(ftyp) + len(probe) + 8  # where the first sample starts, inside mdat
    moov = _moov(duration_ms, display, _stbl(avcc, visible, sizes, offset))
    return ftyp + moov + _box(b"mdat", *samples)
