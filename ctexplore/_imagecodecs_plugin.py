"""pydicom decoder plugin: imagecodecs (BSD-3) decodes 12-bit JPEG Extended (1.2.840.10008.1.2.4.51).

python-gdcm's wheel and pillow refuse 12-bit precision, and the only other plugin that reads it,
pylibjpeg-libjpeg, is GPL and therefore an optional extra. imagecodecs' ``jpeg8_decode`` (libjpeg-turbo 3)
reads 8- and 12-bit DCT JPEG. It is appended after pydicom's own plugins, so it only runs when they are
absent or fail. Lossy JPEG decoders need not agree bit for bit: ISO/IEC 10918-2 lets inverse-DCT output
differ by one stored value, and libjpeg-turbo and pylibjpeg-libjpeg do differ by one on a few percent of
pixels.
"""

from __future__ import annotations

import threading
from typing import Any

from pydicom.uid import JPEGExtended12Bit

PLUGIN_LABEL = "imagecodecs"
DECODER_DEPENDENCIES = {JPEGExtended12Bit: ("imagecodecs>=2024.1",)}
_REGISTERING = threading.Lock()  # pydicom's add_plugin is not thread-safe; slices decode in threads


def is_available(uid: str) -> bool:
    """pydicom's plugin hook: imagecodecs is importable with its JPEG 8 codec built in."""
    if uid != JPEGExtended12Bit:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(imagecodecs.JPEG8.available)


def _decode_frame(src: bytes, runner: Any) -> bytes:
    """pydicom's plugin hook: one encoded frame in, its pixels out as native-order bytes."""
    import imagecodecs

    if runner.samples_per_pixel != 1:
        # libjpeg-turbo would convert YCbCr to RGB, which pydicom's raw decoding contract forbids
        raise NotImplementedError(
            "the imagecodecs plugin decodes greyscale only; (0028,0002) Samples per Pixel is "
            f"{runner.samples_per_pixel}"
        )
    frame = imagecodecs.jpeg8_decode(src)
    if runner.bits_stored > 8 and frame.dtype.itemsize == 1:
        raise ValueError(f"imagecodecs decoded an 8-bit frame, but (0028,0101) Bits Stored is {runner.bits_stored}")
    runner.set_option("bits_allocated", 8 * frame.dtype.itemsize)
    return frame.tobytes()


def register() -> None:
    """Append this plugin to pydicom's 12-bit JPEG Extended decoder, once per process."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(JPEGExtended12Bit)
    with _REGISTERING:
        if PLUGIN_LABEL not in decoder._available and PLUGIN_LABEL not in decoder._unavailable:
            decoder.add_plugin(PLUGIN_LABEL, (__name__, "_decode_frame"))
