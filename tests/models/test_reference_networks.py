"""The reference networks on their own: sizes read back off their weights, input checks.

Their logits are compared with the reference codes in tests/checkpoints.
"""

import doctest
import importlib

import pytest
import torch

from napari_unet_stack.models import (
    REFERENCE_ARCHITECTURES,
    MilesialUNet,
    VGGNestedUNet,
    VGGUNet,
    WZMiaomiaoUNet,
)

SMALL = {
    "milesial-transposed": lambda: MilesialUNet(3, 2, base_channels=4, depth=3),
    "milesial-bilinear-biased": lambda: MilesialUNet(
        1, 3, bilinear=True, base_channels=4, depth=2, conv_bias=True
    ),
    "wzmiaomiao": lambda: WZMiaomiaoUNet(1, 2, base_channels=4, depth=3),
    "wzmiaomiao-transposed": lambda: WZMiaomiaoUNet(3, 1, bilinear=False, base_channels=4, depth=3),
    "vgg-unet": lambda: VGGUNet(3, 1, base_channels=4, depth=3),
    "vgg-nested": lambda: VGGNestedUNet(2, 2, base_channels=4, depth=2),
    "vgg-nested-ds": lambda: VGGNestedUNet(1, 1, base_channels=4, depth=3, deep_supervision=True),
}


def _alive(net):
    """Positive BatchNorm shifts keep the ReLUs of a freshly built small network alive, so
    its logits depend on the input."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.bias.data.fill_(0.5)
    return net


@pytest.mark.parametrize("name", list(SMALL))
def test_sizes_are_read_back_off_the_weights(name):
    net = _alive(SMALL[name]())
    cls = type(net)
    kwargs = cls.kwargs_from_state_dict(net.state_dict())
    rebuilt = cls(**kwargs)
    assert rebuilt.config() == net.config()
    assert REFERENCE_ARCHITECTURES[net.config()["architecture"]] is cls
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, net.in_channels, 16, 24)
    with torch.no_grad():
        expected = net.eval()(x)
        assert torch.equal(rebuilt.eval()(x), expected)
    assert expected.shape == (2, net.out_channels, 16, 24)
    assert expected.std() > 0 and not torch.equal(expected[0], expected[1])


def test_missing_weights_are_named():
    state = MilesialUNet(3, 2, base_channels=4).state_dict()
    del state["outc.conv.weight"]
    with pytest.raises(ValueError, match=r"outc\.conv\.weight"):
        MilesialUNet.kwargs_from_state_dict(state)
    state = {k: v for k, v in state.items() if not k.startswith("down")}
    with pytest.raises(ValueError, match=r"down1\.maxpool_conv"):
        MilesialUNet.kwargs_from_state_dict(state)


@pytest.mark.parametrize("cls", [VGGUNet, VGGNestedUNet])
def test_vgg_networks_need_multiples_of_their_depth(cls):
    net = cls(1, 1, base_channels=4, depth=2).eval()
    with torch.no_grad(), pytest.raises(ValueError, match=rf"{cls.__name__} needs H and W.*of 4.*36 x 30"):
        net(torch.zeros(1, 1, 36, 30))


def test_padded_networks_take_any_size():
    for cls in (MilesialUNet, WZMiaomiaoUNet):
        net = cls(1, 2, base_channels=4, depth=2).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 1, 37, 29)).shape == (1, 2, 37, 29)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: MilesialUNet(in_channels=0), ValueError, "`in_channels` must be >= 1"),
        (lambda: WZMiaomiaoUNet(n_classes=True), TypeError, "`n_classes` must be an int"),
        (lambda: VGGUNet(depth=1.5), TypeError, "`depth` must be an int"),
        (lambda: VGGNestedUNet(base_channels=0), ValueError, "`base_channels` must be >= 1"),
    ],
)
def test_bad_sizes_are_refused(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_docstring_examples():
    module = importlib.import_module("napari_unet_stack.models.reference.milesial")
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
