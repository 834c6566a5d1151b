"""images.py: every format and mode to 8-bit RGB, bad files refused with a reason."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

import _corpus
from imgclf.errors import ImgclfError
from imgclf.data.images import IMAGE_EXTENSIONS, BadImage, inspect_and_read, inspect_image, read_image, resize, to_rgb


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return _corpus.write_good(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return _corpus.write_bad(tmp_path_factory.mktemp("bad"))


def pixels(path, **kwargs) -> np.ndarray:
    img = read_image(path, **kwargs)
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def test_every_good_file_decodes_to_rgb(good):
    for name, path in good.items():
        img = read_image(path)
        assert img.mode == "RGB", name
        assert img.size == Image.open(path).size or name == "rotated.jpg"
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tiff"} <= set(IMAGE_EXTENSIONS)


def test_formats_keep_their_colours(good):
    assert np.abs(pixels(good["rgb.jpg"]) - _corpus.RED).max() <= 3
    assert (pixels(good["pic.webp"]) == _corpus.BLUE).all()
    assert (pixels(good["pic.tiff"]) == _corpus.GREEN).all()
    assert (pixels(good["pic.bmp"]) == _corpus.RED).all()
    assert (pixels(good["gray.png"]) == 100).all()
    assert (pixels(good["bilevel.bmp"]) == 255).all()


def test_gif_gives_its_first_frame(good):
    assert (pixels(good["anim.gif"]) == _corpus.RED).all()


def test_16_bit_gray_is_scaled_by_1_over_257_not_clipped(good):
    row = pixels(good["gray16.png"])[0, :, 0]
    assert row.tolist() == [0, 100, 255, 4]  # 0, 257*100, 65535, 1000 -> round(v / 257)
    assert inspect_image(good["gray16.png"]).mode == "I;16"


def test_16_bit_colour_is_scaled(good):
    assert np.abs(pixels(good["rgb16.png"])[0, 0] - [255, 128, 0]).max() <= 1


def test_cmyk_comes_out_with_the_right_colour(good):
    r, g, b = pixels(good["cmyk.jpg"])[8, 8]
    assert r > 220 and g < 40 and b < 40  # C=0 M=Y=100% is red
    assert inspect_image(good["cmyk.jpg"]).mode == "CMYK"


def test_transparency_is_composited_on_white(good, tmp_path):
    pal = pixels(good["palette.png"])
    assert (pal[:, :4] == _corpus.RED).all() and (pal[:, 4:] == 255).all()
    rgba = pixels(good["rgba.png"])
    assert (rgba[:, :4] == _corpus.BLUE).all() and (rgba[:, 4:] == 255).all()
    half = Image.new("LA", (2, 2), (0, 128))  # black at half opacity over white: mid gray
    assert np.abs(np.asarray(to_rgb(half)).astype(int) - 127).max() <= 1


def test_exif_orientation_is_applied(good):
    img = np.asarray(read_image(good["rotated.jpg"])).astype(int)
    assert img.shape == (40, 20, 3)  # 40x20 stored, orientation 6: shown 20 wide, 40 tall
    assert np.abs(img[3, 16] - _corpus.RED).max() < 40  # top-left corner moved top-right
    assert np.abs(img[3, 3] - _corpus.GREEN).max() < 40
    info = inspect_image(good["rotated.jpg"])
    assert (info.width, info.height, info.format) == (20, 40, "JPEG")


@pytest.mark.parametrize("name", ["truncated.jpg", "empty.jpg", "text.jpg", "bomb.png"])
def test_bad_files_are_refused_with_a_reason(bad, name):
    path, reason = bad[name]
    for read in (read_image, inspect_image):
        with pytest.raises(BadImage) as info:
            read(path)
        assert info.value.reason.startswith(reason)
        assert str(path) in str(info.value) and isinstance(info.value, ImgclfError)


def test_bomb_is_refused_from_the_header_without_decoding(bad):
    start = time.perf_counter()
    with pytest.raises(BadImage, match="too large: 10000000000 pixels exceeds the limit of 64000000"):
        read_image(bad["bomb.png"][0])  # decoding would need 30 GB
    assert time.perf_counter() - start < 1.0


def test_own_pixel_limit_is_checked_before_decoding(good):
    with pytest.raises(BadImage, match="too large: 32x24 pixels exceeds the limit of 700"):
        read_image(good["rgb.jpg"], max_pixels=700)
    assert read_image(good["rgb.jpg"], max_pixels=768).size == (32, 24)
    assert Image.MAX_IMAGE_PIXELS == int(1024 * 1024 * 1024 // 4 // 3)  # Pillow's global untouched


def test_a_file_larger_than_any_image_within_the_limit_is_refused_before_it_is_read(tmp_path, good):
    big = tmp_path / "big.png"
    with open(big, "wb") as fp:
        fp.write(b"\x89PNG\r\n\x1a\n")
        fp.truncate(600 * 2**20)  # sparse: no disk used, and no memory unless read
    start = time.perf_counter()
    with pytest.raises(BadImage, match=r"big.png: file too large for an image within the pixel limit \(600 MB\)"):
        read_image(big)
    assert time.perf_counter() - start < 0.5
    assert read_image(good["rgb.jpg"], max_pixels=768).size == (32, 24)  # a small one within 8 bytes a pixel


def test_missing_file_and_folder_are_bad_images(tmp_path):
    with pytest.raises(BadImage, match="cannot read file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(BadImage, match=r"not a regular file \(a folder\)"):
        read_image(tmp_path)


def test_draft_decodes_big_jpegs_smaller_but_big_enough(tmp_path):
    path = _corpus.save(Image.new("RGB", (800, 600), _corpus.RED), tmp_path / "big.jpg")
    assert read_image(path, draft_size=96).size == (200, 150)  # 1/4 scale: both sides >= 96
    assert inspect_image(path).width == 800  # the info reports the real size


def test_inspect_and_read_keeps_small_images_with_read_images_pixels(good, tmp_path):
    for name, path in good.items():
        info, img = inspect_and_read(path, keep_pixels=64 * 64)
        assert info == inspect_image(path), name
        np.testing.assert_array_equal(np.asarray(img), np.asarray(read_image(path)))  # JPEGs undrafted
    big = _corpus.save(Image.new("RGB", (800, 600), _corpus.RED), tmp_path / "big.jpg")
    assert inspect_and_read(big, keep_pixels=64 * 64) == (inspect_image(big), None)
    assert inspect_and_read(good["rgb.jpg"])[1] is None  # keep_pixels=0: never


def test_resize_squashes_to_a_square_uint8_array():
    out = resize(Image.new("RGB", (40, 10), (10, 20, 30)), 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert (out == (10, 20, 30)).all()


def test_resize_averages_when_shrinking():
    # A one-pixel checkerboard must shrink to flat gray; point sampling would keep 0/255.
    board = ((np.indices((64, 64)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = resize(Image.fromarray(board).convert("RGB"), 8)
    assert np.abs(out.astype(int) - 128).max() <= 3


# Found by benchmarks/fuzz.py: Pillow's TIFF loader raised TypeError ('IFDRational' object cannot
# be interpreted as an integer) on this mutated file.
FUZZED_TIFF = "SUkqAAgAAAAKAAABBAABAAAAIAAAAAEBBAABAAAAGAAAAAIBAwADAAAAhgAAAAMBAwABAAAAAQAAAAYBAwABAAAAAgAAABEBCgABAAAAjAAAABUBAwABAAAAAwAAABYBBAABAAAAGAAAABcBBAABAAAAAAkAABwBAwABAAAAAQAAAAAAAAAIAAgACABegcHYzuoOoiDW2IH3vA9Et+fMTag8fAkc70EStSY6AzpQ3St3eTHPTRs/pXhYqeh+sex/cHpLmkSZgfdeSL+5vn7boOYAKorsvlWOBudf7ks2RkzG2s+vj72qZ3ey7/TlY77XfdoelOaMcg+YB3jSzsIGssm5pSa410jD9isNftoVOUr42y14pwTYMpyJNxGUEx/quEvw1SV6zjk0awuiOWY89D4GZ8ldAF8G0B6n6h0BqAmtqrrhjYU5Na2kMGXdQO/fiJxkGZjCMrA3YRn0/XR8JUj+PsQSzVUFF/oscCdg8qx+rj3FOPLFfoOlu6Qd1n8KPa+uaDizu1mPYrk6Cd89rpQhFAMyk7h0src6aXDX8J18hRdNGl/0AWtOFwxGa8CzXntCsgO3hXi04pGlqxHReBzumx8Fh0t2l1rQpDerasZOkezdLEBLB2VRotUwt/gKI5dBkyCAnViAVbuRucGOI0Bj6UgCUxkE6OKiuY9CAiY5uwHTtVQwiJ7uiWwLkAaBFLsri1+2KSfUTu2cZVBFfshf7AJQ2E9GPAMeq8lBRGDfa/tLE5FP/Q2t6NaqhcMKVbej2ZEStnclFaMq29JvSHKuSR3kSOfaymtUkLMnXQo6h7xZw5lDUAyqtvCQmLSPZrsUI/44v9Ax33FO8XGWOhYaOoeeyaiPkyFBIOWIWHZLE2Dt5TbaBqvtCfDisXASMuMnG8ElUi3wE9VvCyfbdlzrgPGhFrwAGoaDkoFXOgygjq2TwjJZ7LND6WekjbtvL+ZkeOYJX/My4RsxCiv4fm/VwAt8x9prsA3xC07FnWcOf1gBpL39QtKOmQD47PFnUy0Dq4PEdByZvtSAg/nAwUlQZwAXVn4d95NqcICG0X7wOW0/KMhMvuMSv+ElaVQIJ0eHHAa7q7zQvqp0DLVo+ajrrnWa7Q8nRC6cOGscglvhIBW7n7mkGmb3kaZq7NbXEKrBAcn24iAK3tnJwgKbTYUdVoMW3Ah0FBQfmC76QtbN0u+4CideFz1b9mQUJV89UIOxMv33Y0UBXQrQ0eI0zkFhVRaG0Yi2xDkSfN95jTKrUqnJezpPFYbjqwpHzOh/vyL4d2vrWJyQ9w4cIEP9RCls9pn2iIpTNqfXPldw9BAUJZslVu3QxCew8uddCRZZdc8NwWO64/bpLaqPRpyXnWx/2vJBBhoMaex5yB23IolpTrIHFwNM/FwWrhIIwbohOiXaJkOCiYEQ5Q=="


def test_a_fuzzed_tiff_that_broke_pillow_is_a_bad_image():
    import base64
    import io
    with pytest.raises(BadImage, match="truncated or corrupt image data"):
        read_image(io.BytesIO(base64.b64decode(FUZZED_TIFF)))
