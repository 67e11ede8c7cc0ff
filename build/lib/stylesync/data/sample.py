"""The shard sample format (one WebDataset sample per clip; docs/ARCHITECTURE.md \"Data path\").

Fields of sample `<key>`:
  frames.mp      msgpack list of JPEG bytes, one per aligned frame (codec "jpeg"), or
  frames.mp4     H.264 in MP4 of the aligned frames (codec "h264")
  mel.npy        float16 (80, T_mel) Wav2Lip mel of the aligned audio
  landmarks.npy  float32 (T, 68, 2) landmarks in crop pixels
  affine.npy     float32 (T, 2, 3) frame pixels -> crop pixels (paste-back uses the inverse)
  audio.npy      int16 (N,) 16 kHz mono audio aligned with frame 0
  json           identity, split, source, fps, sizes, params hash, ...
"""
from __future__ import annotations

import hashlib
import io
import json
import re

import cv2
import msgpack
import numpy as np

FRAME_FIELDS = {"jpeg": "frames.mp", "h264": "frames.mp4"}


def sample_key(clip_id: str) -> str:
    """A WebDataset-safe key (no dots; '/' kept) that stays unique: readable part + hash."""
    readable = re.sub(r"[^A-Za-z0-9_/-]+", "_", clip_id).strip("/")[:120]
    return f"{readable}-{hashlib.sha1(clip_id.encode()).hexdigest()[:10]}"


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


# ------------------------------------------------------------------------------ frames
def encode_frames(frames: np.ndarray, codec: str = "jpeg", quality: int = 95, crf: int = 12) -> tuple[str, bytes]:
    """(T, S, S, 3) RGB uint8 -> (field name, bytes)."""
    if codec == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        jpgs = []
        for f in frames:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            jpgs.append(buf.tobytes())
        return FRAME_FIELDS["jpeg"], msgpack.packb(jpgs, use_bin_type=True)
    if codec == "h264":
        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
            s.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
            for f in frames:
                for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
        return FRAME_FIELDS["h264"], buf.getvalue()
    raise ValueError(f"unknown frame codec {codec!r} (jpeg | h264)")


def jpeg_list(blob: bytes) -> list[bytes]:
    return msgpack.unpackb(blob, raw=False)


def decode_jpeg(data: bytes, reduce: int = 1) -> np.ndarray:
    """JPEG bytes -> RGB (H/reduce, W/reduce, 3); reduce in {1, 2, 4, 8} uses the decoder's own
    DCT-domain downscaling (much faster than decoding full size and resizing)."""
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[reduce]
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None:
        raise ValueError("corrupt JPEG frame")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_frames(sample: dict, indices=None, reduce: int = 1) -> np.ndarray:
    """Frames of a raw sample dict (field -> bytes) -> (N, S, S, 3) RGB uint8."""
    if FRAME_FIELDS["jpeg"] in sample:
        jpgs = jpeg_list(sample[FRAME_FIELDS["jpeg"]])
        idx = range(len(jpgs)) if indices is None else indices
        return np.stack([decode_jpeg(jpgs[i], reduce) for i in idx])
    if FRAME_FIELDS["h264"] in sample:
        import av

        with av.open(io.BytesIO(sample[FRAME_FIELDS["h264"]])) as c:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        if reduce > 1:
            s = frames.shape[1] // reduce
            frames = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA) for f in frames])
        return frames if indices is None else frames[list(indices)]
    raise KeyError("sample has no frames field")


def encode_sample(key: str, frames: np.ndarray, mel: np.ndarray, landmarks: np.ndarray, affine: np.ndarray,
                  audio: np.ndarray, meta: dict, codec: str = "jpeg", quality: int = 95) -> dict[str, bytes]:
    """All fields of one sample as bytes (deterministic for the same inputs)."""
    field, blob = encode_frames(frames, codec, quality)
    return {
        "__key__": key,
        field: blob,
        "mel.npy": npy_bytes(mel.astype(np.float16)),
        "landmarks.npy": npy_bytes(landmarks.astype(np.float32)),
        "affine.npy": npy_bytes(affine.astype(np.float32)),
        "audio.npy": npy_bytes(np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)),
        "json": json.dumps(meta, sort_keys=True).encode(),
    }
