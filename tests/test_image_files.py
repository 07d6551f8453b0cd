"""Image files as a photo viewer shows them: 16-bit and float images keep their range, EXIF orientation is applied,
and what cannot be shown faithfully is refused with a message (pbe.preprocess.open_image and its callers)."""

import numpy as np
import pytest
from PIL import Image

from pbe.preprocess import image_tensor, open_image, to_mask_float


def grey_ramp(width: int = 16, height: int = 8) -> np.ndarray:
    return np.tile(np.linspace(0, 1, width), (height, 1))


def test_a_16_bit_png_keeps_its_brightness(tmp_path):
    ramp = grey_ramp()
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode.startswith("I")  # PIL decodes it as 16-bit: convert("RGB") would clip it to white
    pixels = np.asarray(open_image(tmp_path / "deep.png", "image").convert("RGB"))[..., 0]
    np.testing.assert_allclose(pixels, np.round(ramp * 255), atol=1)


def test_a_float_tiff_in_0_1_keeps_its_brightness(tmp_path):
    ramp = grey_ramp().astype(np.float32)
    Image.fromarray(ramp, mode="F").save(tmp_path / "float.tif")
    pixels = np.asarray(open_image(tmp_path / "float.tif", "image").convert("RGB"))[..., 0]
    np.testing.assert_allclose(pixels, np.round(ramp * 255), atol=1)


def test_a_float_image_outside_0_1_is_refused(tmp_path):
    Image.fromarray(grey_ramp().astype(np.float32) * 300, mode="F").save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"image .*float.tif.*values in \[0, 300\]; a float image must hold"):
        open_image(tmp_path / "float.tif", "image")


def test_a_16_bit_pil_image_passed_directly_keeps_its_range():
    ramp = grey_ramp()
    img = Image.fromarray(np.round(ramp * 65535).astype(np.uint16))
    tensor, pixels = image_tensor(img, "image")
    np.testing.assert_allclose(pixels[..., 0], np.round(ramp * 255), atol=1)
    mask = to_mask_float(img, "mask")  # a 16-bit mask: mid-grey stays mid-grey
    np.testing.assert_allclose(mask, np.round(ramp * 255) / 255, atol=1 / 255)


def test_exif_orientation_is_applied_as_a_viewer_would(tmp_path):
    stored = np.zeros((10, 20, 3), np.uint8)  # landscape as stored, red on the left
    stored[:, :10] = (255, 0, 0)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    img.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.asarray(open_image(tmp_path / "phone.jpg", "image").convert("RGB"))
    assert upright.shape == (20, 10, 3)  # portrait, as the phone showed it
    assert upright[:8, :, 0].mean() > 200 and upright[-8:, :, 0].mean() < 60  # red on top after the turn
