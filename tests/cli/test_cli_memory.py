"""`keep_freed_memory`: the `unet-stack` process's malloc policy (issue 13)."""

import os
import platform
import subprocess
import sys

import pytest

from napari_unet_stack.cli.common import keep_freed_memory

# a child that page-faults in the activations of a few UNet forwards, after the policy or not
CHILD = """
import resource, sys, torch
from napari_unet_stack.cli.common import keep_freed_memory
from napari_unet_stack.models import UNet
tuned = keep_freed_memory() if sys.argv[1] == "1" else False
torch.set_num_threads(1)
net = UNet(1, 2, base_channels=8, depth=3).eval()
x = torch.rand(1, 1, 192, 192)
with torch.inference_mode():
    net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        net(x)
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.parametrize("name, value", [
    ("MALLOC_TRIM_THRESHOLD_", "1"), ("MALLOC_MMAP_THRESHOLD_", "65536"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1"), ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2"),
])  # fmt: skip
def test_a_malloc_tuned_by_the_environment_is_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert keep_freed_memory() is False


@pytest.mark.slow
@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_forwards_reuse_their_freed_memory_instead_of_page_faulting_it_afresh():
    def faults(flag):
        out = subprocess.run([sys.executable, "-c", CHILD, flag], capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")})
        tuned, count = out.stdout.split()
        return tuned, int(count)

    default, kept = faults("0"), faults("1")
    assert kept[0] == "True" and default[0] == "False"
    # glibc's defaults hand the activations back and fault them in again every forward
    # (5 forwards: 5632-11648 faults by default, 288-1009 kept on a shared 2-core AMD machine)
    assert default[1] > 1000 and kept[1] < default[1] / 4, (default, kept)
