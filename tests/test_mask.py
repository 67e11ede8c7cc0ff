"""The lower-face mask and the template face it is built from."""
import numpy as np

from stylesync.config import MaskConfig
from stylesync.face.mask import lower_face_mask
from stylesync.face.template import ALIGN_TEMPLATE, alignment_points, canonical_landmarks, template_to_pixels


def test_template_face_aligns_to_the_authors_template():
    np.testing.assert_allclose(alignment_points(canonical_landmarks()), ALIGN_TEMPLATE, atol=1e-9)
    # identity shape changes that keep the brows and nose keep the alignment points
    np.testing.assert_allclose(alignment_points(canonical_landmarks(mouth_open=5, jaw_width=1.1)), ALIGN_TEMPLATE)


def test_mask_covers_mouth_and_jaw_but_not_eyes_or_nose():
    m = lower_face_mask(256)
    assert m.dtype == np.float32 and m.shape == (256, 256)
    assert set(np.unique(m[m > 0.999])) == {1.0} and set(np.unique(m[m < 0.001])) == {0.0}
    assert 0.35 < m.mean() < 0.55  # LatentSync's covers ~41 %
    for mouth_open in (0.0, 5.0):
        lm = template_to_pixels(canonical_landmarks(mouth_open=mouth_open), 256)
        inside = [m[int(y), int(x)] for x, y in lm[48:68]]  # lips
        assert min(inside) == 1.0
        chin = lm[8]
        assert m[int(chin[1]), int(chin[0])] > 0.95  # the dropped chin stays inside the soft edge
    lm = template_to_pixels(canonical_landmarks(), 256)
    assert max(m[int(y), int(x)] for x, y in lm[36:48]) == 0.0  # eyes
    assert max(m[int(y), int(x)] for x, y in lm[27:36]) < 0.05  # nose kept by the notch
    assert m[:60].max() == 0.0


def test_mask_scales_and_is_parameterised():
    small = lower_face_mask(64)
    assert abs(small.mean() - lower_face_mask(256).mean()) < 0.02
    higher = lower_face_mask(256, MaskConfig(top=50.0))
    assert higher.mean() < lower_face_mask(256).mean()
    assert not lower_face_mask(256).flags.writeable
