"""models/zipformer.py against icefall's Zipformer2 (egs/librispeech/ASR/zipformer/zipformer.py)
where a component can be compared by formula: the stack's downsample -> layers -> upsample ->
bypass path (DownsampledZipformer2Encoder with SimpleDownsample, SimpleUpsample and
BypassModule). `icefall_downsample` is SimpleDownsample.forward transcribed to numpy; the
other values are worked by hand. docs/models.md lists what differs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from strongaudio_jax.models import zipformer


def icefall_downsample(src, bias):
    """SimpleDownsample.forward on [T, C]: right-pad by repeating the last frame to a multiple
    of len(bias), then the softmax(bias)-weighted sum of each group."""
    ds = len(bias)
    pad = -len(src) % ds
    src = np.concatenate([src, np.repeat(src[-1:], pad, axis=0)])
    w = np.exp(bias) / np.exp(bias).sum()
    return (src.reshape(-1, ds, src.shape[1]) * w[None, :, None]).sum(1)


def ours(x, factor, logits, mask=None):
    x = jnp.asarray(x, jnp.float32)[None]
    mask = jnp.ones(x.shape[:2], bool) if mask is None else jnp.asarray(mask)[None]
    y, m = zipformer.downsample(x, mask, factor, jnp.asarray(logits, jnp.float32))
    return np.asarray(y[0]), np.asarray(m[0])


@pytest.mark.parametrize("t", [4, 5, 7])
def test_downsample_is_icefalls_simple_downsample(t):
    """Equal on whole groups and on a trailing group of one real frame (icefall repeats it,
    we average the real frames only: both give that frame)."""
    x = np.arange(1, 2 * t + 1, dtype=np.float32).reshape(t, 2) ** 2
    bias = np.array([0.0, np.log(3.0)], np.float32)  # weights 1/4, 3/4
    y, m = ours(x, 2, bias)
    np.testing.assert_allclose(y, icefall_downsample(x, bias), rtol=1e-6)
    assert m.tolist() == [True] * (-(-t // 2))
    # by hand: frames 1, 2, 4, 8 (channel 0 of a 1-channel clip) -> 1/4 + 3/2, 1 + 6
    np.testing.assert_allclose(ours([[1.0], [2.0], [4.0], [8.0]], 2, bias)[0][:, 0], [1.75, 7.0])


def test_downsample_differs_on_a_partial_group_of_several_frames():
    """Factor 4, six frames: the last group holds 2 real frames. icefall pads with copies of
    the last frame (16 + 32 + 32 + 32) / 4 = 28; ours averages the real ones (16 + 32) / 2 = 24.
    Padded frames of a batch are likewise left out here, where icefall would average them in."""
    x = np.array([[1.0], [2.0], [4.0], [8.0], [16.0], [32.0]], np.float32)
    zero = np.zeros(4, np.float32)
    np.testing.assert_allclose(ours(x, 4, zero)[0][:, 0], [3.75, 24.0])
    np.testing.assert_allclose(icefall_downsample(x, zero)[:, 0], [3.75, 28.0])
    # a padded clip: frames 4..5 are padding, so the second group is not real
    y, m = ours(x, 4, zero, mask=np.array([True] * 4 + [False] * 2))
    assert m.tolist() == [True, False] and y[0, 0] == pytest.approx(3.75)


def test_stack_without_layers_is_downsample_upsample_bypass():
    """A stack with no layers is icefall's DownsampledZipformer2Encoder around an identity
    encoder: out = src + (upsample(downsample(src))[:T] - src) * bypass_scale, bypass_scale 0.5
    at initialisation. Frames 1, 2, 4, 8, 16 at factor 2: downsampled 1.5, 6, 16 (16 repeated),
    upsampled 1.5, 1.5, 6, 6, 16, out 1.25, 1.75, 5, 7, 16. Channels above the stack's width
    pass through unchanged."""
    src = np.array([1.0, 2.0, 4.0, 8.0, 16.0], np.float32)
    x = jnp.asarray(np.stack([src, -src, 10 * src], -1))[None]  # [1, 5, 3]; stack width 2
    stack = zipformer.Stack(dim=2, layers=0, heads=1, ff=4, kernel=3, factor=2)
    params = stack.init(jax.random.PRNGKey(0), x, jnp.ones((1, 5), bool))
    assert float(params["params"]["bypass_scale"].unbox()[0]) == 0.5
    out = np.asarray(stack.apply(params, x, jnp.ones((1, 5), bool)))[0]
    want = np.array([1.25, 1.75, 5.0, 7.0, 16.0])
    np.testing.assert_allclose(out[:, 0], want, rtol=1e-6)
    np.testing.assert_allclose(out[:, 1], -want, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], 10 * src)
    up = np.repeat(icefall_downsample(src[:, None], np.zeros(2, np.float32)), 2, axis=0)[:5, 0]
    np.testing.assert_allclose(out[:, 0], src + (up - src) * 0.5, rtol=1e-6)
