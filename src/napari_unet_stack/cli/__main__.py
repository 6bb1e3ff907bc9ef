"""``python -m napari_unet_stack.cli``: the same as ``unet-stack``."""

import sys

from . import main

sys.exit(main())
